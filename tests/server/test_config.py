import pytest

from server.config import ServerConfig


def test_defaults_are_the_newcomers_loopback_plaintext():
    config = ServerConfig.from_args([], environ={})
    assert (config.host, config.port, config.tls, config.insecure) == ("127.0.0.1", 50051, False, False)
    assert config.refusal() is None


def test_flag_beats_environment_beats_default():
    env = {"WILDSCREEN_PORT": "6000", "WILDSCREEN_MAX_BATCH_SIZE": "4", "WILDSCREEN_INSECURE": "true"}
    config = ServerConfig.from_args(["--port", "7000"], environ=env)
    assert (config.port, config.max_batch_size, config.insecure) == (7000, 4, True)


def test_plaintext_off_loopback_is_refused_without_insecure():
    assert "refusing" in ServerConfig.from_args(["--host", "0.0.0.0"], environ={}).refusal()
    assert ServerConfig.from_args(["--host", "0.0.0.0", "--insecure"], environ={}).refusal() is None


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
        ServerConfig.from_args(argv, environ={})


def test_bad_environment_value_is_reported(capsys):
    with pytest.raises(SystemExit):
        ServerConfig.from_args([], environ={"WILDSCREEN_PORT": "eighty"})
    assert "WILDSCREEN_PORT" in capsys.readouterr().err
