"""Lessons: a guided path through what makes inference fast or slow. Predict, measure, explain."""

import streamlit as st

from lib import ui
from lib.lessons import book, handouts, progress
from lib.ui import lesson_view

ui.require_router()             # a deep link after a restart runs through the router
lesson_view.go_next_if_asked()

present = lesson_view.presenter_mode()
try:
    done = progress.of(lesson_view.visitor())
except Exception:               # noqa: BLE001 - a locked or damaged progress file loses no lesson
    done = {}
if not present:
    st.title("Lessons")
    st.markdown(
        "One question per lesson, in the order a course takes them. **Predict first**, then "
        "press **Measure**: the lesson runs a small real measurement on this machine (about a "
        "minute), sets the answer computed from it beside your prediction, and explains why. "
        "Every number is measured now, or marked as an estimate.")
lesson = lesson_view.picker(done, compact=present)
if present:
    lesson_view.presenter_steps(lesson, lesson_view.predicted_of(lesson))
    st.stop()

predicted = lesson_view.question(lesson)
lesson_view.measure(lesson, predicted)
if lesson_view.result(lesson, predicted):
    lesson_view.try_next(lesson)
    lesson_view.handout(lesson, predicted)

taken = [(each, st.session_state[lesson_view.rows_key(each)], lesson_view.predicted_of(each))
         for each in book.lessons() if lesson_view.rows_key(each) in st.session_state]
if taken:
    st.download_button(
        "Download every lesson measured so far (one PDF)",
        handouts.path_pdf(taken, [each for each in book.lessons()
                                  if lesson_view.rows_key(each) not in st.session_state]),
        file_name="lessons.pdf", mime="application/pdf", key="lessons_path_pdf")
