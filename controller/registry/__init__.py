"""The controller's view of the live agents, fed by the registry bucket."""
