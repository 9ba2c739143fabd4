import pytest

from server import settings
from server.config import CoreSettings
from server.grpc.settings import GrpcSettings
from server.logs import LogSettings


def test_defaults_are_the_newcomers_loopback_plaintext():
    config = GrpcSettings.from_args([], environ={})
    assert (config.host, config.port, config.tls, config.insecure) == ("127.0.0.1", 50051, False, False)
    assert config.refusal() is None


def test_flag_beats_environment_beats_default():
    env = {"WILDSCREEN_PORT": "6000", "WILDSCREEN_MAX_BATCH_SIZE": "4", "WILDSCREEN_INSECURE": "true"}
    config = GrpcSettings.from_args(["--port", "7000"], environ=env)
    assert (config.port, config.core.max_batch_size, config.insecure) == (7000, 4, True)


def test_plaintext_off_loopback_is_refused_without_insecure():
    assert "refusing" in GrpcSettings.from_args(["--host", "0.0.0.0"], environ={}).refusal()
    assert GrpcSettings.from_args(["--host", "0.0.0.0", "--insecure"], environ={}).refusal() is None


@pytest.mark.parametrize(
    "argv,words",
    [
        (["--max-batch-size", "0"], "max_batch_size"),
        (["--backend", "tensorflow"], "backend"),
        (["--device", "tpu"], "device"),
        (["--model-instances", "-1"], "model_instances must not be negative"),
        (["--decode-workers", "-2"], "decode_workers must not be negative"),
        (["--tls-cert", "x.pem"], "go together"),
        (["--max-queue-size", "2", "--max-batch-size", "8"], "max_queue_size"),
        (["--review-queue", "127.0.0.1:8080"], "review_queue"),
        (["--review-queue", "http://127.0.0.1:8080", "--review-queue-max-pending", "0"], "review_queue_max_pending"),
    ],
)
def test_bad_configuration_is_refused(argv, words):
    with pytest.raises(ValueError, match=words):
        GrpcSettings.from_args(argv, environ={})


def test_bad_environment_value_is_reported(capsys):
    with pytest.raises(SystemExit):
        GrpcSettings.from_args([], environ={"WILDSCREEN_PORT": "eighty"})
    assert "WILDSCREEN_PORT" in capsys.readouterr().err


def test_settings_come_in_layers_and_the_core_gets_only_its_own():
    config = GrpcSettings.from_args(["--max-batch-size", "4", "--log-format", "text", "--port", "0"], environ={})
    assert config.core == CoreSettings(max_batch_size=4) and config.log == LogSettings(log_format="text")
    assert not hasattr(config.core, "port") and not hasattr(config.core, "worker_index")
    moved = settings.replace(config, port=9, torch_threads=2)
    assert (moved.port, moved.core.torch_threads, moved.core.max_batch_size) == (9, 2, 4)
    with pytest.raises(TypeError, match="no_such_setting"):
        settings.replace(config, no_such_setting=1)


def test_the_review_service_reads_its_own_variables_with_the_same_loader():
    from server.review.main import build_parser
    from server.review.settings import ReviewServeSettings, ReviewSettings

    env = {"WILDSCREEN_REVIEW_DATA_DIR": "/srv/review", "WILDSCREEN_REVIEW_PORT": "9000", "WILDSCREEN_REVIEW_NO_LOOPBACK": "1",
           "WILDSCREEN_PORT": "1234"}  # the gRPC server's variable: not the review service's
    args = build_parser(env).parse_args(["--claim-seconds", "60", "serve", "--port", "9100", "--secure-cookies"])
    store, serve = settings.from_namespace(ReviewSettings, args), settings.from_namespace(ReviewServeSettings, args)
    assert (str(store.data_dir), store.claim_seconds, store.database_url) == ("/srv/review", 60.0, None)
    assert (serve.port, serve.no_loopback, serve.secure_cookies, serve.log.log_format) == (9100, True, True, "text")
