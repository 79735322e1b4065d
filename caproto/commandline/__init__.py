"""Command-line tools, each a module with ``main()`` (console scripts):

    caproto-get      caproto.commandline.get:main       (like caget)
    caproto-put      caproto.commandline.put:main       (like caput)
    caproto-monitor  caproto.commandline.monitor:main   (like camonitor)
    caproto-repeater caproto.commandline.repeater:main  (like caRepeater)
    caproto-shark    caproto.commandline.shark:main     (CA commands in a pcap)

``python -m caproto.commandline.get ...`` works without installation.
Shared pieces: ``_args`` (options, error handling), ``_format`` (output).
"""
