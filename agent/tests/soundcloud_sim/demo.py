"""A small demo catalog for the sandbox and for tests that want "some realistic accounts"."""

from __future__ import annotations

from .catalog import Catalog, Playlist, Track, User

MIB = 1 << 20
# Who approves the consent page (/authorize) of the demo: `python -m soundcloud_sim --demo`
# (and so the sandbox) passes it as the Simulator's `signed_in`.
DEMO_SIGNED_IN = "band-one"


def demo_catalog() -> Catalog:
    """Two users (`band-one`, `band-two`) with three public tracks each, 2-20 MiB.

    Track 1002 has a hostile title, 1003 is not downloadable (archive it via HLS), and band-two
    also owns 2004, which is blocked and so hidden from default listings.
    band-one (the demo's signed-in owner, `DEMO_SIGNED_IN`) also has a private track, 1004
    (seen with band-one's own token or its secret_token), a public set 5001 "First EP" (1001,
    1002, 1003 in that order) and a private set 5002 "Rehearsals" (1004, 1001). band-two's public
    set 5003 "Split" includes band-one's 1001. Artwork: 1002's -original exists only as PNG,
    1003 has none (`artwork_url` null), the others (and both avatars, and the sets' own
    artwork) have -large, -t500x500 and -original JPEGs.
    """
    return Catalog(
        users=[
            User(
                id=948745750,
                permalink="band-one",
                username="Band One",
                tracks=[
                    Track(
                        id=1001,
                        title="First Demo",
                        size=4 * MIB + 123,
                        content_type="audio/mpeg",
                        created_at="2021/03/04 10:00:00 +0000",
                        genre="Rock",
                    ),
                    Track(
                        id=1002,
                        title="Rehearsal ../../etc/passwd / Ünïcødé 🎸 \\ CON?*",
                        size=6 * MIB + 7,
                        content_type="audio/wav",
                        created_at="2022/07/19 21:13:08 +0000",
                        artwork="png",
                    ),
                    Track(
                        id=1003,
                        title="Live at the Basement (stream only)",
                        size=9 * MIB,
                        downloadable=False,
                        created_at="2023/11/02 08:30:00 +0000",
                        artwork=None,
                    ),
                    Track(
                        id=1004,
                        title="Rehearsal 2026-11-28 (private)",
                        size=3 * MIB + 11,
                        created_at="2026/11/28 19:00:00 +0000",
                        sharing="private",
                    ),
                ],
                playlists=[
                    Playlist(
                        id=5001,
                        title="First EP",
                        tracks=[1001, 1002, 1003],
                        created_at="2023/12/01 12:00:00 +0000",
                        description="Our first three.",
                    ),
                    Playlist(
                        id=5002,
                        title="Rehearsals",
                        tracks=[1004, 1001],
                        sharing="private",
                        created_at="2026/11/29 09:00:00 +0000",
                    ),
                ],
            ),
            User(
                id=948745751,
                permalink="band-two",
                username="Band Two",
                tracks=[
                    Track(
                        id=2001,
                        title="Long Take",
                        size=20 * MIB + 1,
                        content_type="audio/x-flac",
                        created_at="2020/01/15 15:40:49 +0000",
                    ),
                    Track(
                        id=2002,
                        title="Short One",
                        size=2 * MIB - 1,
                        created_at="2024/05/05 05:05:05 +0000",
                    ),
                    Track(
                        id=2003,
                        title="Third Take",
                        size=8 * MIB + 333,
                        content_type="audio/aiff",
                        created_at="2023/02/28 23:59:59 +0000",
                    ),
                    Track(
                        id=2004,
                        title="Blocked In Your Country",
                        size=3 * MIB,
                        access="blocked",
                        created_at="2024/06/06 06:06:06 +0000",
                    ),
                ],
                playlists=[
                    Playlist(
                        id=5003,
                        title="Split",
                        tracks=[2002, 1001, 2001],
                        created_at="2024/05/06 10:00:00 +0000",
                    ),
                ],
            ),
        ]
    )
