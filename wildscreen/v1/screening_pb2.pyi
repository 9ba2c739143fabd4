from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class OverlayFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OVERLAY_FORMAT_NONE: _ClassVar[OverlayFormat]
    OVERLAY_FORMAT_JPEG: _ClassVar[OverlayFormat]
    OVERLAY_FORMAT_PNG: _ClassVar[OverlayFormat]

class Verdict(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VERDICT_UNSPECIFIED: _ClassVar[Verdict]
    VERDICT_CLEAR: _ClassVar[Verdict]
    VERDICT_REVIEW: _ClassVar[Verdict]
    VERDICT_FLAG: _ClassVar[Verdict]
OVERLAY_FORMAT_NONE: OverlayFormat
OVERLAY_FORMAT_JPEG: OverlayFormat
OVERLAY_FORMAT_PNG: OverlayFormat
VERDICT_UNSPECIFIED: Verdict
VERDICT_CLEAR: Verdict
VERDICT_REVIEW: Verdict
VERDICT_FLAG: Verdict

class ScreenRequest(_message.Message):
    __slots__ = ("request_id", "image", "min_confidence", "classes", "overlay", "max_detections", "overlay_weaker")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    MIN_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    OVERLAY_FIELD_NUMBER: _ClassVar[int]
    MAX_DETECTIONS_FIELD_NUMBER: _ClassVar[int]
    OVERLAY_WEAKER_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    image: bytes
    min_confidence: float
    classes: _containers.RepeatedScalarFieldContainer[str]
    overlay: OverlayFormat
    max_detections: int
    overlay_weaker: bool
    def __init__(self, request_id: _Optional[str] = ..., image: _Optional[bytes] = ..., min_confidence: _Optional[float] = ..., classes: _Optional[_Iterable[str]] = ..., overlay: _Optional[_Union[OverlayFormat, str]] = ..., max_detections: _Optional[int] = ..., overlay_weaker: _Optional[bool] = ...) -> None: ...

class Box(_message.Message):
    __slots__ = ("x_min", "y_min", "x_max", "y_max")
    X_MIN_FIELD_NUMBER: _ClassVar[int]
    Y_MIN_FIELD_NUMBER: _ClassVar[int]
    X_MAX_FIELD_NUMBER: _ClassVar[int]
    Y_MAX_FIELD_NUMBER: _ClassVar[int]
    x_min: float
    y_min: float
    x_max: float
    y_max: float
    def __init__(self, x_min: _Optional[float] = ..., y_min: _Optional[float] = ..., x_max: _Optional[float] = ..., y_max: _Optional[float] = ...) -> None: ...

class Detection(_message.Message):
    __slots__ = ("label", "class_id", "confidence", "box", "box_normalized", "verdict")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    CLASS_ID_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    BOX_FIELD_NUMBER: _ClassVar[int]
    BOX_NORMALIZED_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    label: str
    class_id: int
    confidence: float
    box: Box
    box_normalized: Box
    verdict: Verdict
    def __init__(self, label: _Optional[str] = ..., class_id: _Optional[int] = ..., confidence: _Optional[float] = ..., box: _Optional[_Union[Box, _Mapping]] = ..., box_normalized: _Optional[_Union[Box, _Mapping]] = ..., verdict: _Optional[_Union[Verdict, str]] = ...) -> None: ...

class ModelRef(_message.Message):
    __slots__ = ("name", "version", "sha256")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    sha256: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., sha256: _Optional[str] = ...) -> None: ...

class Timing(_message.Message):
    __slots__ = ("decode_ms", "queue_ms", "inference_ms", "total_ms", "batch_size")
    DECODE_MS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_MS_FIELD_NUMBER: _ClassVar[int]
    INFERENCE_MS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MS_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    decode_ms: float
    queue_ms: float
    inference_ms: float
    total_ms: float
    batch_size: int
    def __init__(self, decode_ms: _Optional[float] = ..., queue_ms: _Optional[float] = ..., inference_ms: _Optional[float] = ..., total_ms: _Optional[float] = ..., batch_size: _Optional[int] = ...) -> None: ...

class Error(_message.Message):
    __slots__ = ("code", "message", "retry_after_ms")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_MS_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    retry_after_ms: int
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ..., retry_after_ms: _Optional[int] = ...) -> None: ...

class ClassInfo(_message.Message):
    __slots__ = ("id", "label", "flag_threshold", "review_threshold")
    ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    FLAG_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    REVIEW_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    id: int
    label: str
    flag_threshold: float
    review_threshold: float
    def __init__(self, id: _Optional[int] = ..., label: _Optional[str] = ..., flag_threshold: _Optional[float] = ..., review_threshold: _Optional[float] = ...) -> None: ...

class ScreenResponse(_message.Message):
    __slots__ = ("request_id", "verdict", "detections", "image_width", "image_height", "model", "timing", "overlay", "error", "thresholds", "min_confidence", "image_scores", "head", "image_thresholds", "decided_by", "matches")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    DETECTIONS_FIELD_NUMBER: _ClassVar[int]
    IMAGE_WIDTH_FIELD_NUMBER: _ClassVar[int]
    IMAGE_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TIMING_FIELD_NUMBER: _ClassVar[int]
    OVERLAY_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    THRESHOLDS_FIELD_NUMBER: _ClassVar[int]
    MIN_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    IMAGE_SCORES_FIELD_NUMBER: _ClassVar[int]
    HEAD_FIELD_NUMBER: _ClassVar[int]
    IMAGE_THRESHOLDS_FIELD_NUMBER: _ClassVar[int]
    DECIDED_BY_FIELD_NUMBER: _ClassVar[int]
    MATCHES_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    verdict: Verdict
    detections: _containers.RepeatedCompositeFieldContainer[Detection]
    image_width: int
    image_height: int
    model: ModelRef
    timing: Timing
    overlay: bytes
    error: Error
    thresholds: _containers.RepeatedCompositeFieldContainer[ClassInfo]
    min_confidence: float
    image_scores: _containers.RepeatedCompositeFieldContainer[ImageScore]
    head: ModelRef
    image_thresholds: _containers.RepeatedCompositeFieldContainer[ClassInfo]
    decided_by: str
    matches: _containers.RepeatedCompositeFieldContainer[KnownImageMatch]
    def __init__(self, request_id: _Optional[str] = ..., verdict: _Optional[_Union[Verdict, str]] = ..., detections: _Optional[_Iterable[_Union[Detection, _Mapping]]] = ..., image_width: _Optional[int] = ..., image_height: _Optional[int] = ..., model: _Optional[_Union[ModelRef, _Mapping]] = ..., timing: _Optional[_Union[Timing, _Mapping]] = ..., overlay: _Optional[bytes] = ..., error: _Optional[_Union[Error, _Mapping]] = ..., thresholds: _Optional[_Iterable[_Union[ClassInfo, _Mapping]]] = ..., min_confidence: _Optional[float] = ..., image_scores: _Optional[_Iterable[_Union[ImageScore, _Mapping]]] = ..., head: _Optional[_Union[ModelRef, _Mapping]] = ..., image_thresholds: _Optional[_Iterable[_Union[ClassInfo, _Mapping]]] = ..., decided_by: _Optional[str] = ..., matches: _Optional[_Iterable[_Union[KnownImageMatch, _Mapping]]] = ...) -> None: ...

class KnownImageMatch(_message.Message):
    __slots__ = ("bank", "label", "distance", "reference_id", "added", "action", "signal", "similarity")
    BANK_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    DISTANCE_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_ID_FIELD_NUMBER: _ClassVar[int]
    ADDED_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    bank: str
    label: str
    distance: int
    reference_id: str
    added: str
    action: Verdict
    signal: str
    similarity: float
    def __init__(self, bank: _Optional[str] = ..., label: _Optional[str] = ..., distance: _Optional[int] = ..., reference_id: _Optional[str] = ..., added: _Optional[str] = ..., action: _Optional[_Union[Verdict, str]] = ..., signal: _Optional[str] = ..., similarity: _Optional[float] = ...) -> None: ...

class BankInfo(_message.Message):
    __slots__ = ("name", "action", "entries", "embeddings")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    name: str
    action: Verdict
    entries: int
    embeddings: int
    def __init__(self, name: _Optional[str] = ..., action: _Optional[_Union[Verdict, str]] = ..., entries: _Optional[int] = ..., embeddings: _Optional[int] = ...) -> None: ...

class ImageScore(_message.Message):
    __slots__ = ("label", "class_id", "score", "verdict", "heat_box", "heat_box_normalized")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    CLASS_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    HEAT_BOX_FIELD_NUMBER: _ClassVar[int]
    HEAT_BOX_NORMALIZED_FIELD_NUMBER: _ClassVar[int]
    label: str
    class_id: int
    score: float
    verdict: Verdict
    heat_box: Box
    heat_box_normalized: Box
    def __init__(self, label: _Optional[str] = ..., class_id: _Optional[int] = ..., score: _Optional[float] = ..., verdict: _Optional[_Union[Verdict, str]] = ..., heat_box: _Optional[_Union[Box, _Mapping]] = ..., heat_box_normalized: _Optional[_Union[Box, _Mapping]] = ...) -> None: ...

class GetModelInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("model", "classes", "input_size", "device", "backend", "max_batch_size", "trained", "default_min_confidence", "max_batch_delay_ms", "backend_reason", "head", "head_classes", "head_backbone", "banks", "embedding", "embedding_threshold")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    INPUT_SIZE_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    TRAINED_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_MIN_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_DELAY_MS_FIELD_NUMBER: _ClassVar[int]
    BACKEND_REASON_FIELD_NUMBER: _ClassVar[int]
    HEAD_FIELD_NUMBER: _ClassVar[int]
    HEAD_CLASSES_FIELD_NUMBER: _ClassVar[int]
    HEAD_BACKBONE_FIELD_NUMBER: _ClassVar[int]
    BANKS_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    model: ModelRef
    classes: _containers.RepeatedCompositeFieldContainer[ClassInfo]
    input_size: int
    device: str
    backend: str
    max_batch_size: int
    trained: bool
    default_min_confidence: float
    max_batch_delay_ms: float
    backend_reason: str
    head: ModelRef
    head_classes: _containers.RepeatedCompositeFieldContainer[ClassInfo]
    head_backbone: str
    banks: _containers.RepeatedCompositeFieldContainer[BankInfo]
    embedding: str
    embedding_threshold: float
    def __init__(self, model: _Optional[_Union[ModelRef, _Mapping]] = ..., classes: _Optional[_Iterable[_Union[ClassInfo, _Mapping]]] = ..., input_size: _Optional[int] = ..., device: _Optional[str] = ..., backend: _Optional[str] = ..., max_batch_size: _Optional[int] = ..., trained: _Optional[bool] = ..., default_min_confidence: _Optional[float] = ..., max_batch_delay_ms: _Optional[float] = ..., backend_reason: _Optional[str] = ..., head: _Optional[_Union[ModelRef, _Mapping]] = ..., head_classes: _Optional[_Iterable[_Union[ClassInfo, _Mapping]]] = ..., head_backbone: _Optional[str] = ..., banks: _Optional[_Iterable[_Union[BankInfo, _Mapping]]] = ..., embedding: _Optional[str] = ..., embedding_threshold: _Optional[float] = ...) -> None: ...

class ReloadModelRequest(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: str
    def __init__(self, version: _Optional[str] = ...) -> None: ...
