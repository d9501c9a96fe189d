"""Alibaba Cloud edges: credentials, ACS3 request signing, the CS API client and its emulator."""
