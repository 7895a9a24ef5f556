"""Base spider every source builds on: download slot, spider arguments, start-up log line."""

from __future__ import annotations

import difflib
import math
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn, Protocol

import scrapy

from contentcrawl.redaction import redact_text
from contentcrawl.signals import distributed_run_opened

if TYPE_CHECKING:
    from typing import Self

    from scrapy.crawler import Crawler


# Arguments scrapyd passes to every job (scrapyd.launcher.get_crawl_args: the job id, the
# egg version) and the name of its schedule.json settings, should a client pass it along.
SCRAPYD_ARGUMENTS = frozenset({"_job", "_version", "setting"})


class SharedRun(Protocol):
    """What a source spider calls on the distributed run it is part of (``REDIS_URL`` set)."""

    def start(self, source: AsyncIterator[Any]) -> AsyncIterator[Any]:
        """What of ``source`` this worker's ``start()`` yields."""

    def record_ids(self, keys: Iterable[str]) -> None:
        """Record keys a listing page found, before the page is settled."""

    def settle(self, key: str) -> None:
        """Record a key whose work is done without a record of its own."""


class SpiderArgumentError(ValueError):
    """An unknown or bad ``-a`` argument; its message is one line for the operator."""


@dataclass(frozen=True)
class Argument:
    """A spider argument: ``parse`` turns its text into its value or raises ValueError;
    ``allowed`` says what it takes, for the error message."""

    parse: Callable[[str], Any]
    allowed: str


def _whole_number(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        number = int(text) if text.lstrip("-").isdigit() else None
        if number is None or number < minimum:
            raise ValueError(text)
        return number

    return parse


def _number(text: str) -> float:
    try:
        number = float(text)
    except ValueError:
        raise ValueError(text) from None
    if not math.isfinite(number) or number < 0:
        raise ValueError(text)
    return number


FLAG_VALUES = {"1": True, "true": True, "yes": True, "on": True}
FLAG_VALUES |= {"0": False, "false": False, "no": False, "off": False}


def _flag(text: str) -> bool:
    return FLAG_VALUES[text.lower()]


def choice(*values: str) -> Argument:
    """An argument that takes one of ``values``."""

    def parse(text: str) -> str:
        if text.lower() not in values:
            raise ValueError(text)
        return text.lower()

    return Argument(parse, f"one of {', '.join(values)}")


def subset(*values: str) -> Argument:
    """A comma-separated argument whose parts are among ``values``."""

    def parse(text: str) -> list[str]:
        parts = [part.strip() for part in text.split(",") if part.strip()]
        if not parts or any(part not in values for part in parts):
            raise ValueError(text)
        return list(dict.fromkeys(parts))

    return Argument(parse, f"a comma-separated list among {', '.join(values)}")


POSITIVE = Argument(_whole_number(1), "a whole number of 1 or more")
NON_NEGATIVE = Argument(_whole_number(0), "a whole number of 0 or more")
NUMBER = Argument(_number, "a number of 0 or more")
FLAG = Argument(_flag, "a yes/no flag: 1, true, yes, on, 0, false, no or off")
TEXT = Argument(str, "any text")


class ContentSpider(scrapy.Spider):
    """A spider of one source: its requests ride the source's named download slot.

    Subclasses set ``slot`` (a key of ``DOWNLOAD_SLOTS``) and build requests with
    ``self.request(...)``. Spider arguments arrive as strings (``-a name=value``, scrapyd
    job arguments); each class declares those it takes in ``spider_arguments`` (merged
    along the class hierarchy) and reads their parsed values from ``self.options``, and
    checks how they combine in ``check_arguments``. An unknown or bad argument is refused
    with ``SpiderArgumentError`` (``scrapy crawl`` checks them before the crawl starts);
    scrapyd's own job arguments (``_job``, ``_version``) are accepted.
    """

    slot: ClassVar[str]
    spider_arguments: ClassVar[dict[str, Argument]] = {"limit": POSITIVE}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.options = self.parse_arguments(kwargs)
        # Nothing raw for Scrapy to set as attributes: the values are in self.options.
        super().__init__(*args)
        self.limit: int | None = self.options.get("limit")
        # As given, for the run record (contentcrawl.extensions.runs masks secret names).
        self.arguments: dict[str, Any] = dict(kwargs)
        # The shared Redis run when REDIS_URL is set, handed over as the spider opens (before
        # start()) by contentcrawl.extensions.distributed: see joined_distributed_run().
        self.distributed: SharedRun | None = None

    @classmethod
    def from_crawler(cls, crawler: Crawler, *args: Any, **kwargs: Any) -> Self:
        spider = super().from_crawler(crawler, *args, **kwargs)
        # Every argument given: a subclass's own (mode, dump, ...) never reach __init__ here.
        spider.arguments = dict(kwargs)
        crawler.signals.connect(spider.joined_distributed_run, signal=distributed_run_opened)
        return spider

    @classmethod
    def known_arguments(cls) -> dict[str, Argument]:
        """Every argument this spider takes: its classes' ``spider_arguments``, merged."""
        known: dict[str, Argument] = {}
        for klass in reversed(cls.__mro__):
            known.update(vars(klass).get("spider_arguments", {}))
        return known

    @classmethod
    def parse_arguments(cls, given: Mapping[str, Any]) -> dict[str, Any]:
        """The values of the ``-a`` arguments ``given`` (an empty one counts as not given);
        ``SpiderArgumentError`` for an unknown argument or a bad value."""
        known = cls.known_arguments()
        options: dict[str, Any] = {}
        for name, value in given.items():
            if name in SCRAPYD_ARGUMENTS:
                continue
            argument = known.get(name)
            if argument is None:
                close = difflib.get_close_matches(name, known, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise SpiderArgumentError(
                    f"unknown argument {name!r} for {cls.name}{hint}; "
                    f"known: {', '.join(sorted(known))}"
                )
            text = str(value).strip()
            if not text:
                continue
            try:
                options[name] = argument.parse(text)
            except (ValueError, KeyError, OSError) as error:
                # A parser's own message says more when it is not just the value (a file's
                # bad line, a file not found).
                detail = error.strerror if isinstance(error, OSError) else str(error)
                more = f" ({detail})" if detail and detail not in (text, repr(text)) else ""
                cls.refuse(name, text, argument.allowed + more)
        cls.check_arguments(options)
        return options

    @classmethod
    def check_arguments(cls, options: dict[str, Any]) -> None:
        """Refuse (``refuse``) arguments that do not go together; a subclass adds its rules."""

    @classmethod
    def refuse(cls, name: str, value: Any, allowed: str) -> NoReturn:
        """Raise the one-line error for a bad value of argument ``name``."""
        raise SpiderArgumentError(
            f"bad argument {name}={redact_text(str(value))!r} for {cls.name}: {allowed}"
        )

    @property
    def job_state(self) -> dict[str, Any] | None:
        """What Scrapy keeps for this spider in ``JOBDIR`` (``spider.state``, saved when the
        spider closes), for the run that resumes a stopped one; None without ``JOBDIR``.

        Scrapy restores the stopped run's queue and duplicate filter, and calls ``start()``
        again: a spider whose ``start()`` plans its work from something that changes between
        runs (the clock, the store, a daily file) keeps its plan here to pick it up again.
        """
        return getattr(self, "state", None)

    def resumed(self, name: str, value: Any) -> Any:
        """``value``, or what the stopped run this one resumes kept under ``name`` (JOBDIR)."""
        state = self.job_state
        return value if state is None else state.setdefault(name, value)

    def joined_distributed_run(self, run: SharedRun) -> None:
        """Take the shared Redis run (``distributed_run_opened`` signal) this worker is part of."""
        self.distributed = run

    async def read_source(self, source: AsyncIterator[Any]) -> AsyncIterator[Any]:
        """What ``start()`` yields of the run's source: all of it when alone; in a distributed
        run, all of it on the one worker that holds the run's lock (a dump import, or the
        requests that seed the shared queue), nothing on the others, which take requests
        from the queue or stand by to take the source over if that worker dies."""
        if self.distributed is not None:
            source = self.distributed.start(source)
        async for request_or_item in source:
            yield request_or_item

    def account_for_page(self, page: str, found: Iterable[str | None]) -> None:
        """A distributed run: record the keys a listing page found (records, next pages; None
        is nothing to check), then settle the page itself, so a worker killed in between
        leaves the page or its finds to the reconcile."""
        if self.distributed is not None:
            self.distributed.record_ids(key for key in found if key is not None)
            self.distributed.settle(page)

    def settle_key(self, key: str) -> None:
        """A distributed run: a key that ends without a record of its own (a 404, a merged
        or filtered record), which the reconcile must not ask for again."""
        if self.distributed is not None:
            self.distributed.settle(key)

    def request(self, url: str, **kwargs: Any) -> scrapy.Request:
        """A request in this source's download slot (its rate limit), whatever the host."""
        meta = kwargs.pop("meta", None) or {}
        meta.setdefault("download_slot", self.slot)
        return scrapy.Request(url, meta=meta, **kwargs)
