"""The anchors' step timer: untimed steps first, then the median of the timed ones, in milliseconds."""
import statistics, time

def median_ms(step, timed=6, untimed=2):
    for _ in range(untimed): step()
    times = []
    for _ in range(timed):
        start = time.perf_counter(); step(); times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)
