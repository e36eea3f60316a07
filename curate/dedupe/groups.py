"""Groups that cannot chain, keepers a person would choose, and only verified members set aside.

Why not connected components: with transitive grouping, one wrong link joins two whole groups, and a chain of
screenshots in one shared frame became one group of 142 images from 16 photos. Here every group is a star:
images are visited best keeper first; each joins the group of the closest keeper it is a verified
near-duplicate of (hash distance within the threshold, then pixels confirmed by storage.hashes.verify), or
starts a group of its own. So every member is within the threshold of its keeper, by construction.

A pair within the threshold whose pixels do not confirm it is a *candidate*: reported for review, never set
aside. People's decisions win: a pair marked "not duplicates" is never linked, a pair confirmed as duplicates
needs no pixel check, and a chosen keeper is visited first, so it stays its group's keeper.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from storage.catalog.duplicates import Decisions
from storage.hashes.verify import Verdict
from storage.keepers import ImageInfo, keeper_order

__all__ = ["MAX_VERIFIED_PER_IMAGE", "Grouping", "Link", "group_images"]

MAX_VERIFIED_PER_IMAGE = 3  # keepers an image is verified against, closest first, before it is left alone


@dataclass(frozen=True)
class Link:
    """One near-duplicate pair as judged: `member` against `keeper`."""

    keeper: int
    member: int
    distance: int
    verdict: Verdict


@dataclass
class Grouping:
    groups: dict[int, list[Link]] = field(default_factory=dict)  # keeper -> its verified members
    candidates: list[Link] = field(default_factory=list)  # within the threshold, not verified: review
    keeper_of: dict[int, int] = field(default_factory=dict)  # member -> keeper, for every grouped member


def group_images(
    infos: Sequence[ImageInfo],
    pairs: Iterable[tuple[int, int, int]],
    verify: Callable[[int, int], Verdict],
    decisions: Decisions | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> Grouping:
    """Star groups over images `infos` from candidate `pairs` (i, j, distance), each pair within the threshold.

    `verify(keeper, member)` is called at most MAX_VERIFIED_PER_IMAGE times per image."""
    decisions = decisions or Decisions()
    neighbours: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for i, j, dist in pairs:
        if not decisions.separated(infos[i].sha256, infos[j].sha256):
            neighbours[i].append((dist, j))
            neighbours[j].append((dist, i))
    order = sorted(
        (k for k in range(len(infos)) if k in neighbours),
        key=lambda k: keeper_order(infos[k], infos[k].sha256 in decisions.keepers, len(neighbours[k])),
    )
    result = Grouping()
    members_of: dict[int, set[str]] = {}
    for done, k in enumerate(order, 1):
        if on_progress and (done % 64 == 0 or done == len(order)):
            on_progress(done, len(order))
        chosen = infos[k].sha256 in decisions.keepers
        tried = 0
        for dist, other in sorted(neighbours[k]):
            if other not in result.groups or chosen or tried >= MAX_VERIFIED_PER_IMAGE:
                continue  # only keepers already placed; a chosen keeper never joins another group
            if any(decisions.separated(infos[k].sha256, sha) for sha in members_of[other]):
                continue  # a person said it is not a duplicate of someone in that group
            tried += 1
            if decisions.confirmed_pair(infos[k].sha256, infos[other].sha256):
                verdict = Verdict(True, 1.0, "confirmed by a person")
            else:
                verdict = verify(other, k)
            link = Link(other, k, dist, verdict)
            if verdict.verified:
                result.groups[other].append(link)
                result.keeper_of[k] = other
                members_of[other].add(infos[k].sha256)
                break
            result.candidates.append(link)
        else:
            result.groups[k] = []
            members_of[k] = {infos[k].sha256}
    result.groups = {keeper: links for keeper, links in result.groups.items() if links}
    result.candidates = [link for link in result.candidates if link.member not in result.keeper_of]
    return result
