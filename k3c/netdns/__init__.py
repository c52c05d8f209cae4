"""Name resolution on user networks: a resolver per DNS-enabled network on its gateway, fed from the API.

:mod:`~k3c.netdns.names` is the table (which name is which address on which network), made from
LocalContainer and Network objects; :mod:`~k3c.netdns.server` answers DNS on one network's gateway from it;
:mod:`~k3c.netdns.upstream` forwards every other question to the host's resolvers; :mod:`~k3c.netdns.feed`
keeps the table and the listeners current from a watch of the API server (the operator runs it).
"""
