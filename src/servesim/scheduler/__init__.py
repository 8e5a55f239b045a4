"""The replica batch scheduler: queues, preemption and iteration planning.
"""

from servesim._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "BatchPlan": "servesim.scheduler.batch_scheduler",
        "BatchScheduler": "servesim.scheduler.batch_scheduler",
        "DecodeRun": "servesim.scheduler.batch_scheduler",
        "LockstepScheduler": "servesim.scheduler.lockstep",
        "FcfsQueue": "servesim.scheduler.queues",
        "PriorityQueue": "servesim.scheduler.queues",
        "QUEUE_POLICIES": "servesim.scheduler.queues",
        "SchedulerConfig": "servesim.scheduler.config",
        "Sequence": "servesim.scheduler.sequence",
    },
)
