"""The reviewer workbench: a second edge on the core (HTTP, Starlette), with its own store."""
