"""trackflow's stream processors: Faust agents, one per stage, around pure stage functions."""

__all__: list[str] = []
