"""Removing secrets from URLs and text before they reach a log, a stat, an item or an error."""

import base64
import logging
import re
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

MASK = "***"

# Query parameters that carry credentials in the sources' APIs (TMDB's api_key, OAuth
# grants) or in mirrors placed in front of them.
SECRET_PARAMS = frozenset(
    {"api_key", "apikey", "key", "access_token", "token", "client_secret", "password", "secret"}
)

_SCHEME = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://")
_USERINFO_PASSWORD = re.compile(
    r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:@/\s]*):[^@/\s]*@"
)
_QUERY_SECRET = re.compile(
    r"(?P<name>\b(?:" + "|".join(sorted(SECRET_PARAMS)) + r"))=(?P<value>[^&\s\"'<>]+)",
    re.IGNORECASE,
)
_BEARER = re.compile(r"(?P<scheme>Bearer\s+)[A-Za-z0-9._~+/=-]+", re.IGNORECASE)
# A credential field of a JSON document or a Python dict, at any depth of string escaping:
# the MongoDB driver's DEBUG command log quotes the documents it writes and reads (the IGDB
# token's state) as JSON inside JSON, cut at 1,000 characters, maybe inside the value.
# "key" is left out: it names the record key of the store's documents.
_JSON_SECRET = re.compile(
    r"(?P<name>(?P<quote>\\*[\"'])(?:"
    + "|".join(sorted(SECRET_PARAMS - {"key"}))
    + r")(?P=quote)\s*:\s*(?P=quote))[^\"'\\]*",
    re.IGNORECASE,
)
# Where a URL parser ends the host: a password holding one of these unescaped is cut there.
_AUTHORITY_END = re.compile(r"[/?#]")


def _userinfo_span(url: str) -> tuple[int, int] | None:
    """Where ``url``'s userinfo starts and where its closing ``@`` is, if it has one.

    A password must escape ``/``, ``?`` and ``#`` (RFC 3986), but generated ones (base64)
    hold them and get pasted as they are. Parsers then end the host at that character —
    ``urlsplit`` sees no password, redis-py and http.client quote its first piece as a bad
    port in their errors — so a userinfo is also taken to run up to the first ``@`` after
    such a cut, when what precedes the cut is ``user:`` and not a ``host:port``.
    """
    scheme = _SCHEME.match(url)
    if scheme is None:
        return None
    start = scheme.end()
    cut = _AUTHORITY_END.search(url, start)
    authority_end = cut.start() if cut else len(url)
    at = url.rfind("@", start, authority_end)
    if at != -1:
        return start, at
    authority = url[start:authority_end]
    _, colon, after_colon = authority.partition(":")
    # No colon, a port, or an IPv6 literal ("[::1]:8080"): a host, and the "@" is further on.
    if not colon or after_colon.isdigit() or authority.startswith("["):
        return None
    at = url.find("@", authority_end)
    return (start, at) if at != -1 else None


def split_userinfo(url: str) -> tuple[str, str, str | None]:
    """``url`` without its userinfo, the user, and the password (None without one), as written."""
    span = _userinfo_span(url)
    if span is None:
        return url, "", None
    start, at = span
    user, colon, password = url[start:at].partition(":")
    return url[:start] + url[at + 1 :], user, password if colon else None


def basic_auth(user: str, password: str) -> str:
    """The ``Authorization`` value of HTTP basic auth: how a URL's userinfo is sent once
    ``split_userinfo`` took it out of the URL."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def url_password_forms(url: str) -> list[str]:
    """The password in ``url`` as written, decoded, and the pieces parsers cut it into.

    What to register (``register_secret``) for a configured URL, so that an error quoting
    any of them is masked in the log.
    """
    _, _, password = split_userinfo(url)
    if not password:
        return []
    return list(dict.fromkeys([password, unquote(password), *_AUTHORITY_END.split(password)]))


def redact_url(url: str) -> str:
    """Return ``url`` with a userinfo password and credential query parameters masked."""
    span = _userinfo_span(url)
    if span is not None:
        start, at = span
        user, colon, _ = url[start:at].partition(":")
        if colon:
            url = f"{url[:start]}{user}:{MASK}{url[at:]}"
    parts = urlsplit(url)
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(name.lower() in SECRET_PARAMS for name, _ in pairs):
            query = urlencode(
                [(name, MASK if name.lower() in SECRET_PARAMS else value) for name, value in pairs],
                safe="*",
            )
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def redact_text(text: str, secrets: tuple[str, ...] = ()) -> str:
    """Mask URL passwords, credential parameters and fields, bearer tokens and ``secrets``."""
    text = _USERINFO_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
    text = _QUERY_SECRET.sub(lambda m: f"{m['name']}={MASK}", text)
    text = _JSON_SECRET.sub(lambda m: f"{m['name']}{MASK}", text)
    text = _BEARER.sub(lambda m: f"{m['scheme']}{MASK}", text)
    # Longest first: a secret's piece (also registered) must not leave the rest of it behind.
    for secret in sorted(secrets, key=len, reverse=True):
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


def redact_known(text: str) -> str:
    """``redact_text`` with every registered secret: for text printed rather than logged."""
    return redact_text(text, tuple(_registered_secrets))


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
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            # A malformed format string: logging reports it itself when emitting.
            return record
        clean = redact_known(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact_known(_formatter.formatException(record.exc_info))
            record.exc_info = None
        return record

    redacting_factory.redacting = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(redacting_factory)


_formatter = logging.Formatter()


def _lowest_root_handler_level() -> int:
    levels = [handler.level for handler in logging.root.handlers]
    # No handler: logging's last resort prints WARNING and above.
    return min(levels) if levels else logging.WARNING
