"""Threaded client faces: ``client`` (caproto's API) and ``pyepics_compat``."""
