"""The sampling core (scrape/sampling.py) on its own: no database, no clock, no daemon.

The rules the manual states and the restart tests rely on, as properties over random rows:
a collection is the next entry after `offset` skips; a sample proceeds when changed or older than
maxage (exactly maxage waits); after a proceeding decision the state is exactly what resume()
rebuilds from the record written for it, so a run cut after any record and started again makes
the same decisions as one run from the start.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import assume, given
from hypothesis import strategies as st

from scraperd.scrape import sampling
from scraperd.scrape.sampling import Rules, SourceRow

T0 = datetime(2011, 3, 27, 0, 0, 0)  # Europe/Paris springs forward at 02:00 that night
ZONES = [ZoneInfo("UTC"), ZoneInfo("Asia/Shanghai"), ZoneInfo("Europe/Paris")]


@st.composite
def source_rows(draw: st.DrawFn, max_rows: int = 60) -> list[SourceRow]:
    """Rows as a DCS table holds them: ids ascending, date_times mostly ascending by a few seconds,
    with repeats (duplicate stamps) and the odd step back (a late or out-of-order row)."""
    steps = draw(st.lists(st.sampled_from([0, 1, 2, 3, 5, 10, 30, 400, -7]), min_size=1, max_size=max_rows))
    values = draw(st.lists(st.sampled_from([0.0, 0.5, 2.0, 5.0]), min_size=len(steps), max_size=len(steps)))
    rows, t = [], T0
    for i, (dt, v) in enumerate(zip(steps, values, strict=True), start=1):
        t += timedelta(seconds=dt)
        rows.append(SourceRow({"id": i, "date_time": t, "v": v}))
    return rows


def read_order(rows: list[SourceRow]) -> list[SourceRow]:
    """The order the shell feeds rows in: (date_time, id)."""
    return sorted(rows, key=lambda r: (r.date_time, r.id))


def changed_of(state: sampling.Sampler) -> bool:
    """A regime's verdict: v moved by more than 1.0 (only asked of a full vector)."""
    return state.full and abs(state.sv[-1]["v"] - state.sv[0]["v"]) > 1.0


def decisions(rows: list[SourceRow], state: sampling.Sampler, rules: Rules) -> list[sampling.Decision]:
    """Every decision a run from `state` over `rows` (read order) makes."""
    out = []
    for row in read_order(rows):
        state, collected, _ = sampling.step(state, row)
        if collected:
            decision = sampling.decide(state, changed_of(state), rules)
            out.append(decision)
            state = decision.state
    return out


def rules_st() -> st.SearchStrategy[Rules]:
    return st.builds(Rules, maxage=st.sampled_from([timedelta(seconds=s) for s in (5, 30, 60, 600)]),
                     interval=st.sampled_from([timedelta(seconds=s) for s in (1, 10, 20)]),
                     tz=st.sampled_from(ZONES))


def propagations(ds: list[sampling.Decision]) -> list[tuple[int, sampling.Validity]]:
    return [(d.sample.sv[-1].id, d.validity) for d in ds if d.validity is not None]


@given(rows=source_rows(), offset=st.integers(0, 3), rules=rules_st())
def test_collections_take_the_next_entry_after_offset_skips_and_never_go_back(rows, offset, rules):
    state = sampling.resume(T0, None, offset)
    seen: set[datetime] = set()  # date_times stepped at or after tcursor
    collected_at: list[datetime] = []
    skipped = 0
    for row in read_order(rows):
        before = state
        state, collected, why = sampling.step(state, row)
        if row.date_time in seen:
            assert not collected and why in ("duplicate_date_time", "already_seen")
        if row.date_time < before.tcursor:
            assert not collected and state == before and why in ("before_tcursor", "duplicate_date_time")
        if collected:
            assert row.date_time not in seen and state.sv[-1] is row and state.n == before.n + 1
            assert skipped == offset  # exactly `offset` usable rows skipped since the last collection
            skipped = 0
            collected_at.append(row.date_time)
            state = sampling.decide(state, changed_of(state), rules).state
        elif why == "skipped":
            skipped += 1
        if row.date_time >= before.tcursor:
            seen.add(row.date_time)
    assert collected_at == sorted(set(collected_at))  # strictly forward in time


@given(rows=source_rows(), rules=rules_st())
def test_a_sample_proceeds_when_changed_or_older_than_maxage_and_exactly_maxage_waits(rows, rules):
    state = sampling.resume(T0, None, 0)
    for row in read_order(rows):
        state, collected, _ = sampling.step(state, row)
        if not collected:
            continue
        changed = changed_of(state)
        sample = sampling.judge(state, changed, rules.maxage)
        if not state.full:
            assert (sample.state, sample.fullness, sample.proceed) == ("notfull", "partial", False)
        else:
            age = state.sv[-1].date_time - state.sv[0].date_time
            want = "changed" if changed else "overage" if age > rules.maxage else "unchanged"
            assert (sample.state, sample.fullness) == (want, "full")
            assert sample.proceed == (changed or age > rules.maxage)
        state = sampling.decide(state, changed, rules).state


@given(rows=source_rows(), offset=st.integers(0, 2), rules=rules_st())
def test_after_a_propagation_the_state_is_what_resume_rebuilds_from_the_record(rows, offset, rules):
    state = sampling.resume(T0, None, offset)
    for row in read_order(rows):
        state, collected, _ = sampling.step(state, row)
        if not collected:
            continue
        decision = sampling.decide(state, changed_of(state), rules)
        if decision.validity is not None:
            vld = decision.validity
            # start-up: tcursor from TIMEEND, sv0 = the row at TIMESTART in local time
            assume(sampling.to_local(vld.timestart, rules.tz) == row.date_time)  # not in a spring-forward gap
            assert vld.timeend - vld.timestart == rules.interval
            rebuilt = sampling.resume(sampling.tcursor_after(vld.timeend, rules.tz), row, offset)
            assert replace(decision.state, n=0) == replace(rebuilt, n=0)
        else:
            assert decision.state is state  # nothing moves when nothing proceeds
        state = decision.state


@given(rows=source_rows(), offset=st.integers(0, 2), rules=rules_st(), data=st.data())
def test_a_run_resumed_after_any_record_makes_the_same_decisions_as_one_run(rows, offset, rules, data):
    one_run = propagations(decisions(rows, sampling.resume(T0, None, offset), rules))
    assume(one_run)
    cut = data.draw(st.integers(0, len(one_run) - 1), label="cut after record")
    sv0_id, vld = one_run[cut]
    sv0 = next(r for r in rows if r.id == sv0_id)
    assume(sampling.to_local(vld.timestart, rules.tz) == sv0.date_time)  # not in a spring-forward gap
    resumed = sampling.resume(sampling.tcursor_after(vld.timeend, rules.tz), sv0, offset)
    # the restart reads the whole source again (a rebuild): rows before tcursor or already seen are ignored
    assert propagations(decisions(rows, resumed, rules)) == one_run[cut + 1:]


@given(rows=source_rows(), rules=rules_st())
def test_validity_ranges_follow_each_other_in_time_and_tcursor_moves_to_their_end(rows, rules):
    ds = [d for d in decisions(rows, sampling.resume(T0, None, 0), rules) if d.validity is not None]
    for d in ds:
        assert d.validity is not None
        assert d.state.tcursor == sampling.to_local(d.validity.timeend, rules.tz)
        assert d.state.sv == (d.sample.sv[-1],)
    starts = [d.validity.timestart for d in ds if d.validity is not None]
    ends = [d.validity.timeend for d in ds if d.validity is not None]
    assert all(e <= s for e, s in zip(ends, starts[1:], strict=False))  # never overlapping


def test_duplicate_date_times_are_ignored_the_first_by_id_counts():
    a = SourceRow({"id": 1, "date_time": T0, "v": 0.0})
    twin = SourceRow({"id": 2, "date_time": T0, "v": 9.0})
    state, collected, _ = sampling.step(sampling.resume(T0, None, 0), a)
    assert collected
    state2, collected, why = sampling.step(state, twin)
    assert (collected, why, state2) == (False, "duplicate_date_time", state)


def test_a_row_before_tcursor_is_ignored():
    row = SourceRow({"id": 1, "date_time": T0 - timedelta(seconds=1), "v": 0.0})
    state = sampling.resume(T0, None, 0)
    assert sampling.step(state, row) == (state, False, "before_tcursor")


@given(rows=source_rows(), offset=st.integers(0, 2), rules=rules_st())
def test_rows_met_out_of_order_are_never_collected_behind_the_last_one_seen(rows, offset, rules):
    # a later read can bring a row dated before what was already read (a late row): it is not collected
    state = sampling.resume(T0, None, offset)
    collected_at = []
    for row in rows:  # id order: date_times step back now and then
        before = state
        state, collected, why = sampling.step(state, row)
        if before.last_seen is not None and row.date_time < before.last_seen:
            assert not collected and why in ("already_seen", "before_tcursor")
        if collected:
            collected_at.append(row.date_time)
            state = sampling.decide(state, changed_of(state), rules).state
    assert collected_at == sorted(set(collected_at))
