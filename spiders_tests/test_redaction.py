"""Secrets never reach a log line: URL passwords, credential parameters, tokens."""

import logging

import pytest

from contentcrawl.redaction import install_log_redaction, redact_text, redact_url, register_secret


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "mongodb://bob:s3cr%40t@db:27017/x?authSource=admin",
            "mongodb://bob:***@db:27017/x?authSource=admin",
        ),
        (
            "https://api.themoviedb.org/3/movie/550?api_key=abc123&language=de",
            "https://api.themoviedb.org/3/movie/550?api_key=***&language=de",
        ),
        (
            "https://id.twitch.tv/oauth2/token?client_id=a&client_secret=b&grant_type=c",
            "https://id.twitch.tv/oauth2/token?client_id=a&client_secret=***&grant_type=c",
        ),
        (
            "https://musicbrainz.org/ws/2/artist?query=x",
            "https://musicbrainz.org/ws/2/artist?query=x",
        ),
        ("redis://:pw@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_redact_text_masks_patterns_and_literals() -> None:
    text = "GET http://h/x?api_key=k1 Authorization: Bearer eyJ.a-b mongodb://u:p@h/ lit-secret"
    clean = redact_text(text, ("lit-secret",))
    for secret in ("k1", "eyJ.a-b", "u:p@", "lit-secret"):
        assert secret not in clean


def test_log_records_are_redacted_including_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    install_log_redaction()
    register_secret("token-4f9a8b")
    log = logging.getLogger("contentcrawl.test")
    with caplog.at_level(logging.DEBUG):
        log.debug("Crawled <GET %s> with %s", "http://h/?api_key=zzz999", "token-4f9a8b")
        try:
            raise RuntimeError("failed with token-4f9a8b at mongodb://user:pw123@h/")
        except RuntimeError:
            log.exception("boom")
    assert "zzz999" not in caplog.text
    assert "token-4f9a8b" not in caplog.text
    assert "pw123" not in caplog.text
    assert "api_key=***" in caplog.text
    assert "RuntimeError" in caplog.text
