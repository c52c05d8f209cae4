"""Streams of LocalContainers: logs, exec and attach, served by the API server and used by the CLI.

Server side (a subresource provider, :class:`k3c.streams.server.StreamService`): ``server`` (the
subresource handlers) with ``queries``, ``logs`` (CRI log files), ``exec`` with ``fifos`` and ``users``
(containerd Tasks exec), ``attach`` (relay to CRI's attach stream), ``containers`` (object → runtime
container) and ``channels`` (the server's channel websocket). Client side (the CLI; import-light):
``client`` with ``wsclient`` and ``terminal``. Shared: ``protocol`` (the wire format).
"""
