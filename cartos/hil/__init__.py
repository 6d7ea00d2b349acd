"""Hardware-in-the-loop harness: scenario files played against the sensors side.

``cartos hil PROFILE SCENARIO…`` runs each scenario against the emulated board
(profile ``sim``) or the real board on the profile's port, and checks the
scenario's expectations; ``tests/scenarios/`` holds the ones CI runs.
"""
