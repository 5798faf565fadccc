/*
 * pyview.h: cheap zero-copy sub-views of a memoryview (bindings only; the
 * engine never includes Python.h).
 *
 * Slicing a memoryview (mv[a:b]) builds two ints and a slice object before the
 * new view; a scan makes one view per record, so that cost dominated. Here a new
 * memoryview shares the base's managed buffer (PyMemoryView_FromObject on a
 * memoryview does exactly that, and keeps the exporter alive and pinned), and
 * its window is then narrowed to [start, start+len). Only for 1-D byte views,
 * which is all the record reader makes; anything else falls back to slicing.
 */
#ifndef PL_PYVIEW_H
#define PL_PYVIEW_H

#include <Python.h>

static PyObject *pl_subview(PyObject *base, Py_ssize_t start, Py_ssize_t len) {
    PyMemoryViewObject *b = (PyMemoryViewObject *)base;
    if (!PyMemoryView_Check(base) || b->view.ndim != 1 || b->view.itemsize != 1 ||
        b->view.suboffsets != NULL || start < 0 || len < 0 || start + len > b->view.len) {
        PyObject *lo = PyLong_FromSsize_t(start), *hi = PyLong_FromSsize_t(start + len);
        PyObject *s = NULL, *r;
        if (lo && hi) s = PySlice_New(lo, hi, NULL);
        Py_XDECREF(lo);
        Py_XDECREF(hi);
        if (!s) return NULL;
        r = PyObject_GetItem(base, s);
        Py_DECREF(s);
        return r;
    }
    PyObject *mv = PyMemoryView_FromObject(base);
    if (!mv) return NULL;
    PyMemoryViewObject *m = (PyMemoryViewObject *)mv;
    m->view.buf = (char *)b->view.buf + start;
    m->view.len = len;
    m->view.shape[0] = len;
    m->view.strides[0] = 1;
    return mv;
}

/* Narrow view, a fresh PyMemoryView_FromObject(base) not yet handed out, to
 * [start, start+len) of base (so it can be allocated before the bytes it will
 * show are known). 0 on success; -1 (nothing changed, no exception set) when
 * pl_subview's conditions do not hold. */
static int pl_narrow(PyObject *view, PyObject *base, Py_ssize_t start, Py_ssize_t len) {
    PyMemoryViewObject *b = (PyMemoryViewObject *)base, *m = (PyMemoryViewObject *)view;
    if (!PyMemoryView_Check(base) || !PyMemoryView_Check(view) || m->mbuf != b->mbuf ||
        b->view.ndim != 1 || b->view.itemsize != 1 || b->view.suboffsets != NULL || start < 0 ||
        len < 0 || start + len > b->view.len)
        return -1;
    m->view.buf = (char *)b->view.buf + start;
    m->view.len = len;
    m->view.shape[0] = len;
    m->view.strides[0] = 1;
    return 0;
}

#endif
