"""Example IOCs: run one with ``python -m caproto.ioc_examples.<name> --list-pvs``.

Each shows one part of the IOC API (see caproto/server/README.md) and is
exercised through libca by tests/server/test_ioc_examples.py.
"""
