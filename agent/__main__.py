"""`python -m agent` is `edge-agent`."""

from agent.entry import main

main()
