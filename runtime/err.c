#include "err.h"

static const struct {
        const char *name;
        const char *str;
} errors[ORDO_ERR__COUNT] = {
#define X(e, s) { #e, s },
        ORDO_ERRORS(X)
#undef X
};

const char *ordo_err_str(ordo_err_t err) {
        return (unsigned)err < ORDO_ERR__COUNT ? errors[err].str
                                               : "unknown error";
}

const char *ordo_err_name(ordo_err_t err) {
        return (unsigned)err < ORDO_ERR__COUNT ? errors[err].name : "?";
}
