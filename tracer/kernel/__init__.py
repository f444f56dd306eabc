"""The kernel side: what the running kernel offers (tracefs formats, BTF, HZ), the program built
for it, the loader (the only module that imports bcc) and the capture session that turns the ring
buffer into decoded records. Also what /proc and the network namespaces say about sockets."""
