"""The default dataset's recipes: which folders of ../shared, capped how, held out where
(build_default, default_v2), and the shell recipes and model cards that train, evaluate and
promote the default models. Recipes use the steps; no step imports a recipe."""
