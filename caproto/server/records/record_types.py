"""The field sets of the record types pvproperty(record=...) can mock.

Each record type is a RecordFields subclass whose ``field_defs`` list the
fields with the DBF types epics-base serves (ULONG fields travel as DOUBLE,
menus as ENUM, links as STRING; string and link fields also as ``FIELD$``).
Fields not listed here are not served.  bi/bo/mbbi/mbbo compute their state
alarms (state_alarms.py); mbbi/mbbo VAL also holds unnamed states (multibit.py).
"""
from ..._data import ChannelEnum
from .calc import evaluate
from .fields import RecordFields, field_def as F, native_kind, scan_choice
from .multibit import UnnamedStates
from .state_alarms import StateAlarms, state_index

__all__ = ("RECORD_TYPES",)

_ALARM_SEVERITY = "sevr"


def _doc_line(data):
    """DESC from the pvproperty's doc: its first line, at most 40 bytes."""
    doc = (data.doc or "").strip().splitlines()
    return doc[0] if doc else ""


def _initial_state(data):
    """LALM to start with: the initial value's state (no COS alarm on a first
    write of the value the record already has)."""
    index = state_index(data) if isinstance(data, ChannelEnum) else None
    return 0 if index is None else index


def _ftvl(data):
    kind = native_kind(data)
    if kind == "UCHAR" and type(data).__name__.startswith("PvpropertyChar"):
        return "CHAR"
    return {"MENU": "ENUM"}.get(kind, kind)


COMMON = (
    F("NAME", "STRING", lambda data: data.pvname, read_only=True, length=60,
      friendly="record_name"),
    F("DESC", "STRING", _doc_line, length=40, friendly="description"),
    F("ASG", "STRING", "", length=28, friendly="access_security_group"),
    F("SCAN", "MENU", scan_choice, menu="scan", friendly="scan_rate"),
    F("PINI", "MENU", "NO", menu="pini", friendly="process_at_iocinit"),
    F("PHAS", "SHORT", 0, friendly="scan_phase"),
    F("EVNT", "STRING", "", friendly="event_name"),
    F("TSE", "SHORT", 0, friendly="time_stamp_event"),
    F("TSEL", "LINK", "", friendly="time_stamp_link"),
    F("DTYP", "MENU", "Soft Channel", menu="dtyp", friendly="device_type"),
    F("DISV", "SHORT", 1, friendly="disable_value"),
    F("DISA", "SHORT", 0, friendly="disable"),
    F("SDIS", "LINK", "", friendly="scanning_disable"),
    F("PROC", "UCHAR", 0, friendly="process_record"),
    F("STAT", "MENU", read_only=True, mirror="alarm.status", menu="stat",
      friendly="alarm_status"),
    F("SEVR", "MENU", read_only=True, mirror="alarm.severity", menu="sevr",
      friendly="alarm_severity"),
    F("AMSG", "STRING", read_only=True, mirror="alarm.alarm_string",
      friendly="alarm_message"),
    F("NSTA", "MENU", "NO_ALARM", read_only=True, menu="stat",
      friendly="new_alarm_status"),
    F("NSEV", "MENU", "NO_ALARM", read_only=True, menu="sevr",
      friendly="new_alarm_severity"),
    F("ACKS", "MENU", read_only=True, mirror="alarm.severity_to_acknowledge",
      menu="sevr", friendly="alarm_ack_severity"),
    F("ACKT", "MENU", read_only=True, mirror="alarm.must_acknowledge_transient",
      menu="yesno", friendly="alarm_ack_transient"),
    F("DISS", "MENU", "NO_ALARM", menu="sevr", friendly="disable_alarm_severity"),
    F("LCNT", "UCHAR", 0, read_only=True, friendly="lock_count"),
    F("PACT", "UCHAR", 0, read_only=True, friendly="record_active"),
    F("PUTF", "UCHAR", 0, read_only=True, friendly="dbputfield_process"),
    F("RPRO", "UCHAR", 0, read_only=True, friendly="reprocess"),
    F("UDF", "UCHAR", 0, friendly="undefined"),
    F("UDFS", "MENU", "INVALID", menu="sevr", friendly="undefined_alarm_severity"),
    F("PRIO", "MENU", "LOW", menu="prio", friendly="scheduling_priority"),
    F("TPRO", "UCHAR", 0, friendly="trace_processing"),
    F("FLNK", "LINK", "", friendly="forward_link"),
    F("RTYP", "STRING", lambda data: data.pvspec.record, read_only=True,
      friendly="record_type"),
)


def _analog(number, *, drive, precision=True):
    """Display/alarm/deadband fields of ai, ao, longin, longout, calc.

    Records without DRVH/DRVL take their control limits from HOPR/LOPR."""
    hopr = ("upper_disp_limit",) if drive else ("upper_disp_limit", "upper_ctrl_limit")
    lopr = ("lower_disp_limit",) if drive else ("lower_disp_limit", "lower_ctrl_limit")
    defs = [
        F("EGU", "STRING", "", mirror="units", length=15, friendly="engineering_units"),
        F("HOPR", number, 0, mirror=hopr, friendly="high_operating_range"),
        F("LOPR", number, 0, mirror=lopr, friendly="low_operating_range"),
        F("HIHI", number, 0, mirror="upper_alarm_limit", process=True,
          friendly="hihi_alarm_limit"),
        F("HIGH", number, 0, mirror="upper_warning_limit", process=True,
          friendly="high_alarm_limit"),
        F("LOW", number, 0, mirror="lower_warning_limit", process=True,
          friendly="low_alarm_limit"),
        F("LOLO", number, 0, mirror="lower_alarm_limit", process=True,
          friendly="lolo_alarm_limit"),
        F("HHSV", "MENU", "NO_ALARM", mirror="upper_alarm_severity", process=True,
          menu=_ALARM_SEVERITY, friendly="hihi_severity"),
        F("HSV", "MENU", "NO_ALARM", mirror="upper_warning_severity", process=True,
          menu=_ALARM_SEVERITY, friendly="high_severity"),
        F("LSV", "MENU", "NO_ALARM", mirror="lower_warning_severity", process=True,
          menu=_ALARM_SEVERITY, friendly="low_severity"),
        F("LLSV", "MENU", "NO_ALARM", mirror="lower_alarm_severity", process=True,
          menu=_ALARM_SEVERITY, friendly="lolo_severity"),
        F("HYST", number, 0, mirror="alarm_hysteresis", friendly="alarm_deadband"),
        F("MDEL", number, 0, mirror="value_atol", friendly="monitor_deadband"),
        F("ADEL", number, 0, mirror="log_atol", friendly="archive_deadband"),
        F("LALM", number, 0, read_only=True, friendly="last_value_alarmed"),
        F("ALST", number, 0, read_only=True, friendly="last_value_archived"),
        F("MLST", number, 0, read_only=True, friendly="last_val_monitored"),
    ]
    if precision:
        defs.insert(1, F("PREC", "SHORT", 0, mirror="precision",
                         friendly="display_precision"))
    if drive:
        defs += [
            F("DRVH", number, 0, mirror="upper_ctrl_limit", process=True,
              friendly="drive_high_limit"),
            F("DRVL", number, 0, mirror="lower_ctrl_limit", process=True,
              friendly="drive_low_limit"),
        ]
    return tuple(defs)


def _output(ivov_kind):
    return (
        F("OUT", "LINK", "", friendly="output_specification"),
        F("DOL", "LINK", "", friendly="desired_output_link"),
        F("OMSL", "MENU", "supervisory", menu="omsl", friendly="output_mode_select"),
        F("IVOA", "MENU", "Continue normally", menu="ivoa",
          friendly="invalid_output_action"),
        F("IVOV", ivov_kind, 0 if ivov_kind != "STRING" else "",
          friendly="invalid_output_value"),
    )


_INPUT = (F("INP", "LINK", "", friendly="input_specification"),)
_STATES = ("ZR", "ON", "TW", "TH", "FR", "FV", "SX", "SV", "EI", "NI", "TE",
           "EL", "TV", "TT", "FT", "FF")


def _binary():
    return (
        F("ZNAM", "STRING", mirror=("enum", 0), length=25, friendly="zero_name"),
        F("ONAM", "STRING", mirror=("enum", 1), length=25, friendly="one_name"),
        F("ZSV", "MENU", "NO_ALARM", menu="sevr", process=True,
          friendly="zero_error_severity"),
        F("OSV", "MENU", "NO_ALARM", menu="sevr", process=True,
          friendly="one_error_severity"),
        F("COSV", "MENU", "NO_ALARM", menu="sevr", process=True,
          friendly="change_of_state_svr"),
        F("RVAL", "ULONG", 0, friendly="raw_value"),
        F("LALM", "LONG", _initial_state, read_only=True, friendly="last_value_alarmed"),
        F("MLST", "LONG", 0, read_only=True, friendly="last_value_monitored"),
    )


def _multibit():
    names = ("zero", "one", "two", "three", "four", "five", "six", "seven",
             "eight", "nine", "ten", "eleven", "twelve", "thirteen", "fourteen",
             "fifteen")
    defs = [F(f"{state}ST", "STRING", mirror=("enum", index), length=25,
              friendly=f"{name}_string")
            for index, (state, name) in enumerate(zip(_STATES, names))]
    # Raw values default to 0 as in epics-base: a record with no state
    # strings then has no states defined (SDEF), which decides string puts
    # and the SOFT alarm past FFST (multibit.py, state_alarms.py).
    defs += [F(f"{state}VL", "ULONG", 0, friendly=f"{name}_value")
             for state, name in zip(_STATES, names)]
    defs += [F(f"{state}SV", "MENU", "NO_ALARM", menu="sevr", process=True,
               friendly=f"{name}_severity")
             for state, name in zip(_STATES, names)]
    defs += [
        F("UNSV", "MENU", "NO_ALARM", menu="sevr", process=True,
          friendly="unknown_state_severity"),
        F("COSV", "MENU", "NO_ALARM", menu="sevr", process=True,
          friendly="change_of_state_svr"),
        F("NOBT", "LONG", 0, friendly="number_of_bits"),
        F("RVAL", "ULONG", 0, friendly="raw_value"),
        F("LALM", "LONG", _initial_state, read_only=True, friendly="last_value_alarmed"),
        F("MLST", "LONG", 0, read_only=True, friendly="last_value_monitored"),
    ]
    return tuple(defs)


def _string_posting(menu):
    return (F("OVAL", "STRING", "", read_only=True, friendly="previous_value"),
            F("MPST", "MENU", menu[0], menu=menu, friendly="post_value_monitors"),
            F("APST", "MENU", menu[0], menu=menu, friendly="post_archive_monitors"))


class AiFields(RecordFields):
    field_defs = COMMON + _analog("DOUBLE", drive=False) + _INPUT + (
        F("RVAL", "LONG", 0, friendly="current_raw_value"),
        F("LINR", "MENU", "NO CONVERSION", menu="linr", friendly="linearization"),
    )


class AoFields(RecordFields):
    clamp_to_drive_limits = True
    field_defs = COMMON + _analog("DOUBLE", drive=True) + _output("DOUBLE") + (
        F("RVAL", "LONG", 0, friendly="current_raw_value"),
        F("OVAL", "DOUBLE", 0, read_only=True, friendly="output_value"),
        F("OROC", "DOUBLE", 0, friendly="output_rate_of_change"),
        F("LINR", "MENU", "NO CONVERSION", menu="linr", friendly="linearization"),
    )


class _BinaryFields(StateAlarms, RecordFields):
    min_states = 2
    state_severity_fields = ("ZSV", "OSV")


class _MultibitFields(StateAlarms, RecordFields):
    state_severity_fields = tuple(f"{state}SV" for state in _STATES)
    unknown_severity_field = "UNSV"
    cos_sticks = True
    data_mixin = UnnamedStates        # VAL may hold any index 0..65535


class BiFields(_BinaryFields):
    field_defs = COMMON + _binary() + _INPUT


class BoFields(_BinaryFields):
    field_defs = COMMON + _binary() + _output("LONG") + (
        F("HIGH", "DOUBLE", 0, friendly="seconds_to_hold_high"),)


class MbbiFields(_MultibitFields):
    field_defs = COMMON + _multibit() + _INPUT


class MbboFields(_MultibitFields):
    invalid_past_slots = True
    field_defs = COMMON + _multibit() + _output("LONG")


class LonginFields(RecordFields):
    field_defs = COMMON + _analog("LONG", drive=False, precision=False) + _INPUT


class LongoutFields(RecordFields):
    clamp_to_drive_limits = True
    field_defs = (COMMON + _analog("LONG", drive=True, precision=False)
                  + _output("LONG"))


class StringinFields(RecordFields):
    val_string_size = 40
    field_defs = COMMON + _INPUT + _string_posting(("On Change", "Always"))


class StringoutFields(RecordFields):
    val_string_size = 40
    field_defs = COMMON + _output("STRING") + _string_posting(("On Change", "Always"))


class WaveformFields(RecordFields):
    field_defs = COMMON + _INPUT + (
        F("EGU", "STRING", "", mirror="units", length=15, friendly="engineering_units"),
        F("PREC", "SHORT", 0, mirror="precision", friendly="display_precision"),
        F("HOPR", "DOUBLE", 0, mirror=("upper_disp_limit", "upper_ctrl_limit"),
          friendly="high_operating_range"),
        F("LOPR", "DOUBLE", 0, mirror=("lower_disp_limit", "lower_ctrl_limit"),
          friendly="low_operating_range"),
        F("NELM", "ULONG", lambda data: data.max_length, read_only=True,
          friendly="number_of_elements"),
        F("NORD", "ULONG", lambda data: len(data), read_only=True,
          friendly="number_elements_read"),
        F("FTVL", "MENU", _ftvl, read_only=True, menu="ftype",
          friendly="field_type_of_value"),
        F("MPST", "MENU", "Always", menu="post_waveform", friendly="post_value_monitors"),
        F("APST", "MENU", "Always", menu="post_waveform",
          friendly="post_archive_monitors"),
        F("HASH", "ULONG", 0, friendly="hash_of_onchange_data"),
        F("BUSY", "SHORT", 0, read_only=True, friendly="busy_indicator"),
    )


_INPUTS = "ABCDEFGHIJKL"


class CalcFields(RecordFields):
    """calc: VAL is CALC evaluated over A..L, recomputed whenever CALC, an
    input or an alarm field is written (a bad CALC is refused)."""

    field_defs = COMMON + _analog("DOUBLE", drive=False) + (
        F("CALC", "STRING", "0", length=159, friendly="calculation"),
    ) + tuple(F(f"INP{name}", "LINK", "", friendly=f"input_{name.lower()}")
              for name in _INPUTS) + tuple(
        F(name, "DOUBLE", 0, friendly=f"value_of_input_{name.lower()}")
        for name in _INPUTS)

    async def field_written(self, name, value):
        if name == "CALC" or name in _INPUTS:
            await self._compute(name, value)
            return value
        return await super().field_written(name, value)

    async def reprocess(self):
        await self._compute()

    async def _compute(self, name=None, value=None):
        """VAL = CALC(A..L), with `name` about to become `value`."""
        inputs = {key: self.fields[key].value for key in _INPUTS}
        calc = self.fields["CALC"].value
        if name == "CALC":
            calc = value
        elif name is not None:
            inputs[name] = value
        await self.data.write(evaluate(calc, inputs), verify_value=False)


RECORD_TYPES = {
    "ai": AiFields, "ao": AoFields, "bi": BiFields, "bo": BoFields,
    "mbbi": MbbiFields, "mbbo": MbboFields, "longin": LonginFields,
    "longout": LongoutFields, "stringin": StringinFields,
    "stringout": StringoutFields, "waveform": WaveformFields, "calc": CalcFields,
}
for _name, _cls in RECORD_TYPES.items():
    _cls.record_type = _name
del _name, _cls
