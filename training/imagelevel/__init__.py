"""The image-level head's training side: labels from folders and tables, features cached by sha256.

    sources     the image-level label table of ../shared/data: labels, source and group per photo
    cache       one backbone's features in npz shards keyed by image sha256 (atomic, checked)
    features    the resumable extraction: `python -m training.imagelevel.features --out DIR`
    dataset     a run's rows with v3's roles (recipes/default_v3) and each variant's pooled features
    head        the linear multi-label head and its fit (torch L-BFGS, class-balanced BCE + L2)
    calibration review and flag thresholds of head and detector together, against one review budget
    detector    `training head-detector`: a promoted detector's per-class scores, cached by sha256
    fit         `training head-fit`: one variant fitted, calibrated and written as a candidate
    evaluate    `training head-evaluate`: detector, head and v3 per class and held-out source
    export      `write_head`: <version>.head.npz and its manifest entry (the contract with server/)
"""
