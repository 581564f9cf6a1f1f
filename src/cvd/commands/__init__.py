"""Sub-commands of the `cvd` command line; each module adds one sub-parser."""
