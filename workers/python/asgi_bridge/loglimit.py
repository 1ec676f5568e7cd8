"""Rate limit for warnings a peer can provoke once per message (the gateway's
gateway/log_limiter.hpp, in small): per key, the first ``burst`` lines of each
``window`` seconds pass; the rest are counted, and the count rides along with the next
line that passes. Keys are few (a bus link and a reason): past ``max_keys``, the
limiter starts over rather than grow."""

import time


class LogLimiter:
    def __init__(self, window=10.0, burst=5, max_keys=1024, clock=time.monotonic):
        self.window = window
        self.burst = burst
        self.max_keys = max_keys
        self._clock = clock
        self._buckets = {}  # key -> [window start, lines passed, lines suppressed]

    def warn(self, logger, key, message, *args):
        """logger.warning(message, *args) unless `key` has had its lines this window."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._buckets.clear()
            bucket = self._buckets[key] = [now, 0, 0]
        if now - bucket[0] >= self.window:
            bucket[0], bucket[1] = now, 0
        if bucket[1] >= self.burst:
            bucket[2] += 1
            return
        bucket[1] += 1
        suppressed, bucket[2] = bucket[2], 0
        if suppressed:
            message += f" (and {suppressed} more like it in the last {self.window:g} s)"
        logger.warning(message, *args)
