"""The chaos benchmark: the real system (relay, 3 agents in one group, slapd and a
Samba AD DC) under kill -9s, cut result posts, a relay restart, directory outages and
a skewed agent clock, judged from the directory itself. See `python -m bench.chaos -h`."""
