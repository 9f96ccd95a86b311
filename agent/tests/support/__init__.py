"""Test infrastructure shared by the agent tests, the system tests and the sandbox.

Everything here runs real servers on loopback (127.0.0.1) only.
"""
