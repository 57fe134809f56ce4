"""The change request state machine: one table of allowed transitions, and nothing else decides.

A user moves a change one step at a time (submit, cancel). The ITSM tool reports where the change is now; a
poll may have missed steps, so a state further along is reached by the shortest legal path, every step
recorded. A state that is not ahead (behind, equal, or on another branch) changes nothing: that is what makes
duplicate and out-of-order notifications harmless.
"""

from __future__ import annotations

from collections import deque

from syncplane.changes.choices import ChangeState as S

TRANSITIONS: dict[str, frozenset[str]] = {
    S.DRAFT: frozenset({S.SUBMITTED, S.CANCELLED}),
    S.SUBMITTED: frozenset({S.ASSESS, S.APPROVED, S.REJECTED, S.CANCELLED}),
    S.ASSESS: frozenset({S.APPROVED, S.REJECTED, S.CANCELLED}),
    S.APPROVED: frozenset({S.SCHEDULED, S.IMPLEMENTING, S.CANCELLED}),
    S.SCHEDULED: frozenset({S.IMPLEMENTING, S.CANCELLED}),
    S.IMPLEMENTING: frozenset({S.COMPLETED, S.CANCELLED}),
    S.REJECTED: frozenset(),
    S.COMPLETED: frozenset(),
    S.CANCELLED: frozenset(),
}
FINAL_STATES = frozenset(state for state, following in TRANSITIONS.items() if not following)
OPEN_STATES = frozenset(TRANSITIONS) - FINAL_STATES - {S.DRAFT}


class IllegalTransition(Exception):
    def __init__(self, current: str, target: str):
        allowed = sorted(TRANSITIONS.get(current, ()))
        allowed_text = ", ".join(allowed) if allowed else f"none ({current} is final)"
        super().__init__(f"a change cannot go from {current} to {target}; allowed from {current}: {allowed_text}")
        self.current = current
        self.target = target


def can_transition(current: str, target: str) -> bool:
    return target in TRANSITIONS.get(current, ())


def check_transition(current: str, target: str) -> None:
    if not can_transition(current, target):
        raise IllegalTransition(current, target)


def path_to(current: str, target: str) -> list[str]:
    """The states to walk through, in order, to reach `target` from `current` (target included); [] when
    `target` is not ahead of `current` — the same state, an earlier one, or a branch not taken."""
    if target not in TRANSITIONS or current == target:
        return []
    came_from: dict[str, str] = {}
    queue = deque([current])
    while queue:
        state = queue.popleft()
        # Sorted, so the same gap is always filled the same way (approved before assess, say).
        for following in sorted(TRANSITIONS[state]):
            if following in came_from or following == current:
                continue
            came_from[following] = state
            if following == target:
                path = [target]
                while path[-1] in came_from and came_from[path[-1]] != current:
                    path.append(came_from[path[-1]])
                return path[::-1]
            queue.append(following)
    return []
