"""wildscreen's retraining pipeline: import, check, split, train, evaluate, export, promote.

Floors, each importing only the ones below it (tests/test_architecture.py checks it):

    cli                 `python -m training` / `wildscreen-train`: lists the modules that register commands
    recipes/            the default dataset: which folders of ../shared, capped how, held out where
        build_default   `build-default`: views, autolabel rounds, import, check, split, composites; BUILD.md
        default_v2      v2's sources: products, more reptiles, wildscan, whole sources held out
        default_v3      the image-level head's roles: train, calibration, holdout by whole groups (v2's kept)
        wildscan_by_type  a script: held-out wildscan photos by type at the calibrated thresholds
        cuda_pack       `python -m training.recipes.cuda_pack`: the data a lent GPU run needs, packed under 15 MB
        cuda_select     cuda_pack's choice of what goes in and what is dropped first
        cuda_run        the helpers cuda_v3.sh calls on the GPU machine: head features, resume, the summary
        polars          standins/polars.py: the few polars calls Ultralytics makes, on the path only where polars is missing
    steps/              the pipeline, one command each; a step never imports another step
        importing       `import`: a labelled export (a format of formats.py) into a dataset
        check           `check`: broken files, bad labels, duplicates, leakage (--fix quarantines)
        split           `split`: group-aware, class-stratified, sources held out whole
        train           `train`: Ultralytics fine-tuning, offline, with wildscreen_run.json
        evaluate        `evaluate`: detection and image-level metrics, calibrated thresholds, the card
        calibrate       evaluate's thresholds: the operating points a target precision/recall reach
        modelcard       evaluate's model card
        export          `export`: ONNX, int8, TensorRT, each checked against the .pt
        quantize        export's int8 quantisation (static QDQ, ONNX Runtime)
        promote         `promote` and `placeholder`: a version into weights/ with its manifest
        compare         `compare`: one table of evaluated runs
        mine            `mine`: false positives on clean images become background images
    labelling/          labels made rather than imported
        autolabel       `autolabel`: boxes proposed for images labelled per image
        composite       `composite`: cut-outs pasted onto real backgrounds, boxes from the paste
        segment         objects found by their pixels (plain background, GrabCut)
    layout              the dataset on disk: images/, labels/, meta.csv, split lists, data.yaml
    mapping             source class names -> taxonomy labels
    formats             the ONE table of import formats and their readers (YOLO, COCO, VOC, negatives)
    metrics             box IoU and Ultralytics' detection metrics, shared by the steps
    modelfile           checkpoints: untrained models, their facts, the serving engine on them, the device
    runs                a run folder's records: wildscreen_run.json, export.json, dataset counts
    phash               perceptual hashes and near-duplicate clusters
    sheets              contact sheets: images with their boxes, for a person to look at
    imagelevel/         the image-level head (features, fit, calibration, evaluation, export), the embedding signal

Label-file lines and image suffixes are server/core/yolo_files.py's (the review export writes the same files).
"""
