"""``inline``: One job after another in this process. An exception becomes the job's error. Timeouts and
    memory limits are not enforced (nothing can be stopped safely in the driver). Peak memory is
    the resident set size (RSS) above its level at the start of the job, sampled by a thread and
    read from the kernel's peak-RSS counter, which is reset at job start
    (``memory_measure="shared_process"``: the driver's other memory use counts too).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from bench.run.executors.base import Executor, Job, JobResult, OnResult, execute

log = logging.getLogger(__name__)


class InlineExecutor(Executor):
    name = "inline"

    def run(self, jobs: Sequence[Job], on_result: OnResult) -> None:
        for job in jobs:
            if job.timeout_s is not None or job.max_memory_mb is not None:
                log.debug("%s: the inline executor does not enforce timeouts or memory limits", job.label)
            rows, error, tb, wall, peak, measure = execute(job, fresh=False, enforce_limit=False,
                                                            catch=(Exception, SystemExit))
            on_result(job, JobResult(rows, error, wall, peak, measure, tb))
