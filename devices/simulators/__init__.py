"""Simulated devices: chosen by configuration (``--sim``), never by monkeypatching.

- ``instrument``: ASCII/SCPI instruments from pyvisa-sim-style YAML
  (``temperature_controller.yaml``, ``multimeter.yaml``), served on loopback
  TCP or a pty, with fault injection; ``VisaFaultLayer`` for pyvisa-sim sessions.
- ``iio`` / ``dht22``: fake IIO sysfs tree and DHT22 fault model.

Every simulator exposes ``inject(fault)`` and ``received`` (see devices/driver.py).
"""
