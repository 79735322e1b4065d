"""Device drivers: each depends only on devices.driver/transport/errors, never on
pyserial/pyvisa/gpiozero directly. Looked up by name through devices.registry."""
