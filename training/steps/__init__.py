"""The pipeline's steps, one command each: import, check, split, train, evaluate, export, promote
(and placeholder), compare, mine. A step imports no other step: what two steps share lives on the
floor below (training/*.py); calibrate, modelcard and quantize are helpers that register nothing."""
