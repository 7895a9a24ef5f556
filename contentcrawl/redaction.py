"""Removing secrets from URLs and text before they reach a log, a stat, an item or an error."""

import logging
import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "***"

# Query parameters that carry credentials in the sources' APIs (TMDB's api_key, OAuth
# grants) or in mirrors placed in front of them.
SECRET_PARAMS = frozenset(
    {"api_key", "apikey", "key", "access_token", "token", "client_secret", "password", "secret"}
)

_USERINFO_PASSWORD = re.compile(
    r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:@/\s]*):[^@/\s]*@"
)
_QUERY_SECRET = re.compile(
    r"(?P<name>\b(?:" + "|".join(sorted(SECRET_PARAMS)) + r"))=(?P<value>[^&\s\"'<>]+)",
    re.IGNORECASE,
)
_BEARER = re.compile(r"(?P<scheme>Bearer\s+)[A-Za-z0-9._~+/=-]+", re.IGNORECASE)


def redact_url(url: str) -> str:
    """Return ``url`` with a userinfo password and credential query parameters masked."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{MASK}@{hostport}" if ":" in userinfo else netloc
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(name.lower() in SECRET_PARAMS for name, _ in pairs):
            query = urlencode(
                [(name, MASK if name.lower() in SECRET_PARAMS else value) for name, value in pairs],
                safe="*",
            )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str, secrets: tuple[str, ...] = ()) -> str:
    """Mask URL passwords, credential parameters, bearer tokens and the given literal secrets."""
    text = _USERINFO_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
    text = _QUERY_SECRET.sub(lambda m: f"{m['name']}={MASK}", text)
    text = _BEARER.sub(lambda m: f"{m['scheme']}{MASK}", text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    return text


# Secrets known at run time (settings, tokens obtained from an OAuth endpoint): every log
# record is scrubbed of them once ``install_log_redaction`` has run.
_registered_secrets: set[str] = set()
_MIN_SECRET_LENGTH = 4


def register_secret(value: str | None) -> None:
    """Mask ``value`` wherever it appears in a log record from now on."""
    if value and len(value) >= _MIN_SECRET_LENGTH:
        _registered_secrets.add(value)


def install_log_redaction() -> None:
    """Make every new log record redacted: message, arguments and traceback text.

    A record factory rather than a handler filter, so handlers added later (scrapyd's,
    pytest's caplog, a file handler) receive clean records too.
    """
    current = logging.getLogRecordFactory()
    if getattr(current, "redacting", False):
        return

    def redacting_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = current(*args, **kwargs)
        # Scrapy filters by level in its root handler, so DEBUG records are created even
        # when nothing emits them: redact only what some root handler will emit.
        if record.levelno < _lowest_root_handler_level():
            return record
        secrets = tuple(_registered_secrets)
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            # A malformed format string: logging reports it itself when emitting.
            return record
        clean = redact_text(message, secrets)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None:
            text = _formatter.formatException(record.exc_info)
            record.exc_text = redact_text(text, secrets)
            record.exc_info = None
        return record

    redacting_factory.redacting = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(redacting_factory)


_formatter = logging.Formatter()


def _lowest_root_handler_level() -> int:
    levels = [handler.level for handler in logging.root.handlers]
    # No handler: logging's last resort prints WARNING and above.
    return min(levels) if levels else logging.WARNING
