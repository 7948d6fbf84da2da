"""The Lessons page's pieces: taking a lesson (predict, measure, answer, why, try next), the
visitor's progress, the class's predictions for the host, presenter mode and the handout.

A lesson's measurement is a sweep run like Explore's (`running.run_sweep_with_status`, saved
in the history), sized to the lesson's budget; its rows are kept per lesson in the session,
so coming back to a lesson shows its answer again. Presenter mode (the toggle, or `?present=1`
in the link) hides the sidebar, enlarges the type and shows one step at a time (question,
measurement, answer with its chart, why), with the arrow keys for next and previous.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from lib.access import classroom
from lib.core import text
from lib.core.errors import ExplorerError
from lib.lessons import answer as answers
from lib.lessons import book, progress, taking
from lib.lessons.book import Lesson
from lib.ui import classroom_view, door, glossary_view, running, state
from lib.ui.progress import Failed, error_boundary

STEPS = ("The question", "Measure", "The answer", "Why")
PRESENTER_CSS = """
<style>
[data-testid="stSidebar"], [data-testid="stSidebarCollapsedControl"],
[data-testid="stExpandSidebarButton"] { display: none !important; }
.stMainBlockContainer, .block-container { max-width: 1200px; padding-top: 1.5rem; }
.stMarkdown p, .stMarkdown li, .stRadio label p, .stAlert p { font-size: 1.6rem !important;
  line-height: 1.35; }
h1 { font-size: 2.6rem !important; } h2, h3 { font-size: 2.1rem !important; }
button p { font-size: 1.3rem !important; }
</style>
"""
# Arrow keys (and a presenter remote's page keys) press the page's Next / Previous buttons (the
# component's frame shares the page's origin, so it can reach them). Not while typing; on a
# prediction's radio buttons the arrows move between steps too, never change the prediction.
KEYS_JS = """
<script>
const doc = window.parent.document;
if (!doc.__lessonKeys) {
  doc.__lessonKeys = true;
  doc.addEventListener("keydown", (event) => {
    const target = event.target;
    const typing = target.tagName === "TEXTAREA" || (target.tagName === "INPUT" &&
      !["radio", "checkbox"].includes(target.type));
    if (typing) return;
    const name = event.key === "ArrowRight" || event.key === "PageDown" ? "Next"
      : event.key === "ArrowLeft" || event.key === "PageUp" ? "Previous" : null;
    if (!name) return;
    const button = [...doc.querySelectorAll("button")].find(b => b.innerText.trim() === name);
    if (button && !button.disabled) {
      button.click(); event.preventDefault(); event.stopPropagation();
    }
  }, true);   // capturing: the radio group would keep the arrows to itself
}
</script>
"""


def rows_key(lesson: Lesson) -> str:
    return f"lesson_rows_{lesson.id}"


def prediction_key(lesson: Lesson) -> str:
    return f"lesson_predict_{lesson.id}"


def predicted_of(lesson: Lesson) -> int | None:
    """The prediction made for `lesson` in this session, kept apart from its radio (Streamlit
    forgets a widget's value on the runs it is not drawn: presenter steps, other lessons)."""
    return st.session_state.get(f"{prediction_key(lesson)}_kept")


def _keep_prediction(lesson: Lesson) -> None:
    """The radio's callback: runs before the next page run whatever interrupts it (a Next
    pressed at once), so the prediction is kept even if no run draws the radio again."""
    key = prediction_key(lesson)
    chosen = st.session_state.get(key)
    st.session_state[f"{key}_kept"] = chosen
    if chosen is None:
        return
    try:
        progress.predict(visitor(), lesson.id, chosen)
    except Exception:            # noqa: BLE001 - a locked or read-only store loses no lesson
        st.session_state[f"{key}_unkept"] = True


def step_key(lesson: Lesson) -> str:
    return f"lesson_step_{lesson.id}"


def visitor() -> str:
    return classroom_view.visitor_id()


def presenter_mode() -> bool:
    """The toggle, first set from the link (`?present=1`)."""
    st.session_state.setdefault(state.PRESENTER, st.query_params.get("present") == "1")
    on = st.toggle("Presenter mode", key=state.PRESENTER,
                   help="For a projector: large type, no sidebar, one step at a time; the "
                        "arrow keys go to the next and previous step.")
    if on:
        st.markdown(PRESENTER_CSS, unsafe_allow_html=True)      # our own constant, no input
        st.iframe(KEYS_JS, height=1)                             # our own constant script
    return on


def picker(done: dict[str, tuple[int | None, int | None]], compact: bool = False) -> Lesson:
    lessons = book.lessons()
    ids = [lesson.id for lesson in lessons]
    wanted = st.query_params.get("lesson")
    if wanted in ids and state.LESSON not in st.session_state:
        st.session_state[state.LESSON] = wanted

    def label(lesson_id: str) -> str:
        # Never changes with progress: a new label is a new widget to Streamlit, which would
        # go back to the first lesson.
        lesson = book.get(lesson_id)
        return f"{ids.index(lesson_id) + 1}. {lesson.chapter}: {lesson.title}"
    chosen = st.selectbox("Lesson", ids, format_func=label, key=state.LESSON,
                          label_visibility="collapsed" if compact else "visible")
    if not compact:
        finished = [str(ids.index(lesson_id) + 1) for lesson_id in ids
                    if done.get(lesson_id, (None, None))[1] is not None]
        st.caption(f"{len(finished)} of {len(ids)} lessons measured in this browser"
                   + (f": {', '.join(finished)}." if finished else ".")
                   + " Lessons use their own settings; the sidebar's are for the Playground "
                     "and Explore.")
    return book.get(chosen)


def question(lesson: Lesson) -> int | None:
    """The question and the learner's prediction (kept, with their progress)."""
    st.caption(lesson.chapter)
    glossary_view.markdown(lesson.question, heading=3)
    key = prediction_key(lesson)
    kept = predicted_of(lesson)
    if key not in st.session_state and kept is not None:
        st.session_state[key] = kept      # a widget not drawn in a run loses its state
    # No default beside a value set through session state (Streamlit warns about both).
    default = {} if key in st.session_state else {"index": None}
    chosen = st.radio("Your prediction, before measuring:", range(len(lesson.choices)),
                      format_func=lambda index: lesson.choices[index], key=key,
                      on_change=_keep_prediction, args=(lesson,), **default)
    if st.session_state.pop(f"{key}_unkept", False):
        st.caption("Your prediction could not be kept in this browser's progress.")
    if classroom.enabled() and door.is_host():
        counts = progress.class_counts(lesson.id, len(lesson.choices))
        if sum(counts) > 1:
            st.caption("The room's predictions: " + "; ".join(
                f"{choice}: {count}" for choice, count in zip(lesson.choices, counts)))
    return chosen


def measure(lesson: Lesson, predicted: int | None, compact: bool = False) -> None:
    """The time promise and the Measure button; the rows kept when it ends. `compact`
    (presenter mode): the button first, the promise in one line, and no prediction needed
    (the room predicts out loud)."""
    from lib.measure.budget import clock_words

    base, values = taking.base_spec(lesson), taking.factor_values(lesson)
    try:
        plan = running.sweep_plan(base, values, taking.BUDGET_S)
    except ExplorerError as exc:
        st.error(text.md(exc))
        return
    busy = plan.other_cpu_percent is not None and plan.slowdown > 1.05
    again = rows_key(lesson) in st.session_state
    blocked = predicted is None and not compact
    if compact:
        pressed = st.button("Measure again" if again else "Measure", type="primary",
                            key=f"lesson_measure_{lesson.id}")
        st.caption(f"About {clock_words(plan.estimated_s)}, at most "
                   f"{clock_words(taking.at_most_s(plan))}"
                   + (f"; other programs are using {plan.other_cpu_percent:.0f}% of the CPU"
                      if busy else "") + ".")
    else:
        if busy:
            st.warning(running.busy_words(plan.other_cpu_percent, base.threads,
                                          factor=plan.slowdown))
        st.caption(f"Measuring takes about {clock_words(plan.estimated_s)}, at most "
                   f"{clock_words(taking.at_most_s(plan))} (an estimate from "
                   f"{text.md(plan.basis)}"
                   + (f", with other programs on {plan.other_cpu_percent:.0f}% of the CPU"
                      if busy else "") + f"). It runs {text.md(_what(lesson))} and is saved in "
                   "the History.")
        pressed = st.button("Measure again" if again else "Measure", type="primary",
                            disabled=blocked, key=f"lesson_measure_{lesson.id}",
                            help="Predict first." if blocked else None)
        if blocked:
            st.caption("Make your prediction first: the point is to see whether it holds.")
    if not pressed:
        return
    with classroom_view.run_turn(f"the lesson {lesson.title!r}") as allowed:
        if not allowed:
            return
        try:
            with error_boundary():
                result = running.run_sweep_with_status(base, values, taking.BUDGET_S)
        except Failed:
            return
    from lib.records import table
    rows = table.rows(result)
    st.session_state[rows_key(lesson)] = rows
    found = answers.answer(lesson, rows)
    try:
        progress.answered(visitor(), lesson.id, found.choice)
    except Exception:            # noqa: BLE001 - the answer shows even if it can't be kept
        pass
    st.rerun()                   # the lesson list marks it done, above


def _what(lesson: Lesson) -> str:
    from lib.measure.factors import FACTORS
    factor = FACTORS[lesson.factor]
    shown = ", ".join(factor.value_label(value) + (" (an estimate)" if factor.estimated(value)
                                                    else "") for value in lesson.values)
    return f"{factor.label}: {shown}"


def result(lesson: Lesson, predicted: int | None, large: bool = False,
           only: str | None = None) -> bool:
    """The answer, its chart and why (`only`: "answer" or "why", for presenter steps);
    False when there is nothing measured yet."""
    rows = st.session_state.get(rows_key(lesson))
    if not rows:
        return False
    found = answers.answer(lesson, rows)
    if only in (None, "answer"):
        verdict = found.verdict(lesson, predicted)
        if not verdict and found.choice is not None:
            verdict = f"Measured: {lesson.choices[found.choice]}."
        if only == "answer" and not found.trusted:          # one sentence: why no answer
            st.warning(text.md(found.text))
        elif verdict:
            (st.success if found.choice == predicted else st.info)(text.md(verdict))
        if only is None:
            if found.trusted:
                glossary_view.markdown(found.text)
            else:
                st.warning(text.md(found.text))
        # A projector's chart keeps its own large type (Streamlit's theme would shrink it).
        st.plotly_chart(answers.chart(lesson, rows, large), key=f"lesson_chart_{lesson.id}",
                        theme=None if large else "streamlit")
    if only == "why" and found.trusted:                     # the numbers, then why
        glossary_view.markdown(found.text)
    if only in (None, "why"):
        st.subheader("Why")
        glossary_view.markdown(taking.why(lesson, rows))
    return True


def handout(lesson: Lesson, predicted: int | None) -> None:
    rows = st.session_state.get(rows_key(lesson))
    if not rows:
        return
    from lib.lessons import handouts
    counts = progress.class_counts(lesson.id, len(lesson.choices)) \
        if classroom.enabled() and door.is_host() else None
    st.download_button("Download the handout (PDF)",
                       handouts.lesson_pdf(lesson, rows, predicted, counts),
                       file_name=f"lesson-{lesson.id}.pdf", mime="application/pdf",
                       key=f"lesson_handout_{lesson.id}")


def try_next(lesson: Lesson) -> None:
    """A button that fills in Explore or the Playground for the lesson's next step and goes
    there (the settings are set in its callback, before the sidebar's widgets exist)."""
    step = lesson.next
    if not step:
        return
    label = "Explore factors" if step["page"] == "explore" else "the Playground"
    st.button(f"Try this next on {label}", key=f"lesson_next_{lesson.id}",
              on_click=_fill_next, args=(lesson,))


def _fill_next(lesson: Lesson) -> None:
    from lib.ui import links
    step = lesson.next
    params: dict[str, Any] = {name: str(value) for name, value in
                              dict(taking.base_spec(lesson).to_dict(),
                                   **step.get("settings", {})).items() if value is not None}
    if step["page"] == "explore":
        params.update({"factor": step["factor"], "values": step["values"], "mode": "one"})
    links.apply_params(params)
    st.session_state[state.LESSON_GO] = step["page"]


def go_next_if_asked() -> None:
    """Switch to the page a "try this next" button filled in (first thing on the page)."""
    page = st.session_state.pop(state.LESSON_GO, None)
    if page is not None:
        from lib.ui import links
        st.switch_page(links.page_path(page))


def presenter_steps(lesson: Lesson, predicted: int | None) -> None:
    """One step at a time, with Previous / Next (and the arrow keys)."""
    key = step_key(lesson)
    step = st.session_state.setdefault(key, 0)
    st.caption(f"Step {step + 1} of {len(STEPS)}: {STEPS[step]}")
    if step == 0:
        question(lesson)
    elif step == 1:
        glossary_view.markdown(lesson.question, heading=4)
        measure(lesson, predicted, compact=True)
    elif step == 2:
        if not result(lesson, predicted, large=True, only="answer"):
            st.info("Nothing measured yet: go back one step and press Measure.")
    else:
        if not result(lesson, predicted, large=True, only="why"):
            glossary_view.markdown(lesson.why)
    back, forward = st.columns(2)
    if back.button("Previous", disabled=step == 0, key=f"lesson_prev_{lesson.id}"):
        st.session_state[key] = step - 1
        st.rerun()
    if forward.button("Next", disabled=step == len(STEPS) - 1, key=f"lesson_next_step_{lesson.id}"):
        st.session_state[key] = step + 1
        st.rerun()
