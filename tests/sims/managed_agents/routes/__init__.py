"""Route handlers as mixins of :class:`~..simulator.ManagedAgentsSimulator`, one per area of the API."""
