"""The link runtime: one view's hop through the channel, the typed messages of each hop,
sockets, the process frame and the launcher of the three processes."""
