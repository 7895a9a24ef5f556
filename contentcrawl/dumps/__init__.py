"""Dump files of any source: resumable streaming download, incremental line reading, progress.

Dumps are many gigabytes, so nothing here holds a whole file in memory, and nothing runs on
the reactor: ``download_dump`` and reads of a ``DumpFile`` are blocking calls meant for a
worker thread (``asyncio.to_thread``). ``download`` fetches (resumable, conditional),
``read`` opens and reads a local file, ``crawl`` joins both to a running crawl; the spiders
that import dumps build on ``contentcrawl.sources.dump_spider.DumpSpider``. This package
imports no Scrapy (``crawl`` does, and is imported by name): the dump workers import it.
"""

from contentcrawl.dumps.download import (
    CHUNK_SIZE,
    DownloadCancelledError,
    DownloadError,
    DownloadResult,
    Validators,
    download_dump,
    dump_file_name,
    is_url,
    local_path,
)
from contentcrawl.dumps.progress import Progress, format_bytes, format_duration
from contentcrawl.dumps.read import (
    IMPORT_GC_THRESHOLD,
    BadLineLimit,
    DumpFile,
    DumpReadError,
    fewer_gc_passes,
)

__all__ = [
    "CHUNK_SIZE",
    "IMPORT_GC_THRESHOLD",
    "BadLineLimit",
    "DownloadCancelledError",
    "DownloadError",
    "DownloadResult",
    "DumpFile",
    "DumpReadError",
    "Progress",
    "Validators",
    "download_dump",
    "dump_file_name",
    "fewer_gc_passes",
    "format_bytes",
    "format_duration",
    "is_url",
    "local_path",
]
