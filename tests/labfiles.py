"""Lab files that unit and integration tests both read (the same lab over the fake drivers and the kernel)."""

#: The example of issue 2: both forms of a host's networks, a host on no network, two links web1-db.
ISSUE_EXAMPLE = """\
name: demo
networks:
  front:
    subnet: 10.80.1.0/24
  back: {}
hosts:
  web1:
    networks: [front]
  web2:
    networks: {front: 10.80.1.20, back: null}
  db:
    networks: [back]
  lonely: {}
links:
  - [web1, db]
  - {endpoints: [web1, db], subnet: 10.90.0.0/30}
"""

#: Name lookups: a NAT network and an internal one, fixed addresses, a host with its own hostname.
DNS_LAB = """\
name: dn
networks:
  front: {subnet: 10.77.1.0/24}
  back: {subnet: 10.77.2.0/24, internal: true}
hosts:
  a: {networks: {front: 10.77.1.10}}
  b: {networks: {front: 10.77.1.11, back: 10.77.2.11}, hostname: bee}
  c: {networks: {back: 10.77.2.12}}
"""
