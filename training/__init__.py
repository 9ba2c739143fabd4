"""wildscreen's retraining pipeline: import, check, split, train, evaluate, export, promote."""

import server  # noqa: F401  (server.config.stay_offline(): YOLO_OFFLINE before Ultralytics is imported)
