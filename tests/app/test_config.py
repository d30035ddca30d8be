"""Settings: defaults, parsing, and one clear line for every invalid value."""

from __future__ import annotations

from pathlib import Path

import pytest

from flask_example import __version__
from flask_example.app import create_app
from flask_example.settings import ConfigError, Settings, load_settings


def test_defaults_match_the_contract() -> None:
    settings = load_settings({})
    assert settings == Settings()
    assert (settings.port, settings.log_level) == (8080, "info")
    assert settings.listen_host == "0.0.0.0"  # noqa: S104 - the container default
    assert (settings.workers, settings.threads) == (2, 4)
    assert (settings.graceful_timeout, settings.shutdown_delay) == (25.0, 5.0)
    assert settings.tls_cert_file == Path("/tmp/tls/tls.crt")
    assert settings.tls_key_file == Path("/tmp/tls/tls.key")
    assert settings.version == __version__
    assert settings.commit == settings.pod_name == "unknown"
    assert (settings.header_timeout, settings.body_timeout) == (10.0, 30.0)
    assert settings.tls_handshake_timeout == 5.0
    assert (settings.send_timeout, settings.send_total_timeout) == (10.0, 60.0)


def test_the_readme_states_the_send_bounds_the_code_has() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    settings = Settings()
    assert f"`SEND_TOTAL_TIMEOUT` ({settings.send_total_timeout:g} s)" in readme
    assert f"{settings.send_total_timeout:g} s of writes at most" in readme


@pytest.mark.parametrize(
    ("name", "raw", "field", "expected"),
    [
        ("PORT", "8443", "port", 8443),
        ("PORT", " 1 ", "port", 1),
        ("LISTEN_HOST", "127.0.0.1", "listen_host", "127.0.0.1"),
        ("LOG_LEVEL", "WARNING", "log_level", "warning"),
        ("WEB_CONCURRENCY", "64", "workers", 64),
        ("THREADS", "1", "threads", 1),
        ("GRACEFUL_TIMEOUT", "2.5", "graceful_timeout", 2.5),
        ("SHUTDOWN_DELAY", "0", "shutdown_delay", 0.0),
        ("SHUTDOWN_DELAY", ".5", "shutdown_delay", 0.5),
        ("HEADER_TIMEOUT", "2.5", "header_timeout", 2.5),
        ("BODY_TIMEOUT", "120", "body_timeout", 120.0),
        ("SEND_TIMEOUT", "0.5", "send_timeout", 0.5),
        ("SEND_TOTAL_TIMEOUT", "3600", "send_total_timeout", 3600.0),
        ("TLS_HANDSHAKE_TIMEOUT", "0.5", "tls_handshake_timeout", 0.5),
        ("FAULT_ERROR_RATE", "0.25", "fault_error_rate", 0.25),
        ("FAULT_LATENCY", "1.5", "fault_latency", 1.5),
        ("FAULT_UNREADY_AFTER", "60", "fault_unready_after", 60.0),
        ("APP_VERSION", "1.2.3", "version", "1.2.3"),
        ("APP_COMMIT", "abc123", "commit", "abc123"),
        ("APP_BRANCH", "main", "branch", "main"),
        ("APP_CHANNEL", "release", "channel", "release"),
        ("APP_RELEASE", "r", "release", "r"),
        ("APP_NAMESPACE", "dev", "namespace", "dev"),
        ("APP_POD_NAME", "pod-1", "pod_name", "pod-1"),
        ("APP_HOST", "x.example.test", "host", "x.example.test"),
        # Empty means unset: the default stays.
        ("PORT", "", "port", 8080),
    ],
)
def test_each_variable_is_read(name: str, raw: str, field: str, expected: object) -> None:
    assert getattr(load_settings({name: raw}), field) == expected


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("PORT", "abc"),
        ("PORT", "0"),
        ("PORT", "65536"),
        ("PORT", "80.5"),
        ("PORT", "1_000"),
        ("PORT", "٨٠٨٠"),  # non-ASCII digits that int() would accept
        ("WEB_CONCURRENCY", "-1"),
        ("WEB_CONCURRENCY", "0"),
        ("WEB_CONCURRENCY", "two"),
        ("THREADS", "0"),
        ("THREADS", "1000"),
        ("GRACEFUL_TIMEOUT", "0"),
        ("GRACEFUL_TIMEOUT", "nan"),
        ("GRACEFUL_TIMEOUT", "inf"),
        ("GRACEFUL_TIMEOUT", "30s"),
        ("SHUTDOWN_DELAY", "-1"),
        ("SHUTDOWN_DELAY", "1e3"),
        ("HEADER_TIMEOUT", "0"),
        ("BODY_TIMEOUT", "-5"),
        ("SEND_TOTAL_TIMEOUT", "0"),
        ("SEND_TOTAL_TIMEOUT", "3601"),
        ("TLS_HANDSHAKE_TIMEOUT", "301"),
        ("FAULT_ERROR_RATE", "1.5"),
        ("FAULT_ERROR_RATE", "50%"),
        ("FAULT_LATENCY", "11"),
        ("FAULT_UNREADY_AFTER", "-1"),
        ("LOG_LEVEL", "verbose"),
        ("LOG_LEVEL", "info\nLOG_LEVEL=debug"),
    ],
)
def test_invalid_value_is_one_line_naming_the_variable(name: str, raw: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({name: raw})
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{name}=")
    assert f"set {name} to" in message


@pytest.mark.parametrize(("present", "absent"), [("cert", "key"), ("key", "cert")])
def test_only_one_tls_file_is_an_error(tmp_path: Path, present: str, absent: str) -> None:
    (tmp_path / f"tls.{present}").write_text("x")
    environ = {
        "TLS_CERT_FILE": str(tmp_path / "tls.cert"),
        "TLS_KEY_FILE": str(tmp_path / "tls.key"),
    }
    with pytest.raises(ConfigError) as caught:
        load_settings(environ)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"TLS_{absent.upper()}_FILE ")
    assert f"TLS_{present.upper()}_FILE does" in message
    assert "mount both files" in message


@pytest.mark.parametrize(("files", "enabled"), [((), False), (("tls.crt", "tls.key"), True)])
def test_tls_is_on_only_with_both_files(
    tmp_path: Path, files: tuple[str, ...], enabled: bool
) -> None:
    for name in files:
        (tmp_path / name).write_text("x")
    environ = {
        "TLS_CERT_FILE": str(tmp_path / "tls.crt"),
        "TLS_KEY_FILE": str(tmp_path / "tls.key"),
    }
    assert load_settings(environ).tls_enabled is enabled


def test_the_factory_reads_and_validates_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "abc")
    with pytest.raises(ConfigError, match=r"^PORT='abc' is invalid"):
        create_app()
