"""Client tests: the core (in memory and against softIoc), the threading
face and the pyepics-compatible layer, each against a real epics-base softIoc.

CLIENT_DB is the database every softIoc-backed client test serves.
"""
import time

CLIENT_DB = """
record(ai, "cl:ai") {
    field(VAL, "1.5") field(PREC, "3") field(EGU, "mm")
    field(HOPR, "10") field(LOPR, "-10") field(HIHI, "8") field(HHSV, "MAJOR")
}
record(ao, "cl:ao") {
    field(VAL, "2.5") field(PREC, "2") field(EGU, "V")
    field(DRVH, "100") field(DRVL, "-100") field(HOPR, "100") field(LOPR, "-100")
    field(HIHI, "50") field(HHSV, "MAJOR") field(MDEL, "0") field(ADEL, "5")
}
record(bo, "cl:bo") { field(ZNAM, "Off") field(ONAM, "On") }
record(mbbi, "cl:mbbi") {
    field(ZRST, "zero") field(ONST, "one") field(TWST, "two") field(VAL, "1")
}
record(longin, "cl:longin") { field(VAL, "42") field(EGU, "counts") }
record(stringin, "cl:stringin") { field(VAL, "hello") }
record(waveform, "cl:wf") { field(FTVL, "DOUBLE") field(NELM, "10") }
record(waveform, "cl:bigwf") { field(FTVL, "DOUBLE") field(NELM, "5000") }
record(waveform, "cl:text") { field(FTVL, "CHAR") field(NELM, "64") }
record(calc, "cl:calc") {
    field(SCAN, ".1 second") field(CALC, "A+1") field(INPA, "cl:calc")
}
record(ao, "cl:slow") {
    field(VAL, "0") field(OUT, "cl:delay.VAL PP")
}
record(calcout, "cl:delay") { field(CALC, "A") field(ODLY, "0.3") }
"""


def wait_until(predicate, timeout=10.0, interval=0.02):
    """Poll `predicate` until true or `timeout` s pass; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)
