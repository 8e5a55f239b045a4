"""The replica batch scheduler: queues, preemption and iteration planning."""

from servesim.scheduler.batch_scheduler import BatchPlan, BatchScheduler
from servesim.scheduler.config import SchedulerConfig
from servesim.scheduler.queues import QUEUE_POLICIES, FcfsQueue, PriorityQueue
from servesim.scheduler.sequence import Sequence

__all__ = ["BatchPlan", "BatchScheduler", "SchedulerConfig", "QUEUE_POLICIES", "FcfsQueue", "PriorityQueue", "Sequence"]
