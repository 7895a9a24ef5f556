"""contentcrawl's own signals, sent through ``crawler.signals`` like Scrapy's.

Connect with ``crawler.signals.connect(handler, signal=request_gave_up)``.
"""

# Sent by PoliteRetryMiddleware when a request has used up its retries, with
# ``request`` (the last attempt; its URL may carry a secret: log it only through
# contentcrawl.redaction.redact_url), ``reason`` (the status code as a string, such as
# "429", or the exception class name), ``attempts`` (downloads made, the first one
# included) and ``spider``. Run records and dead letters listen to it.
request_gave_up = object()

# Sent by DistributedRun (contentcrawl.extensions.distributed) when its worker opens, with
# ``run``: what a spider calls to seed the shared queue (``run.start(source)``) and account
# for its keys (``run.record_ids(keys)``, ``run.settle(key)``). Spiders take it from here,
# so that no spider imports the extension.
distributed_run_opened = object()
