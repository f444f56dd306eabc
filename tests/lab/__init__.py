"""Throwaway network labs for tests and the lab command.

``tests.lab.netns`` builds small network-namespace topologies (a client and a server on one
veth, or client, router and server with a NAT router) out of iproute2 and nftables only, so that
tests can make the kernel reset real connections without touching any real network. Nothing in
this package imports BCC.
"""
