/* Debian builds libxml2 with ICU, and encoding.h then includes <unicode/ucnv.h>,
 * whose types clash with Foundation's bundled ICU in any Swift module that sees
 * both. shootdown never touches the encoding handlers (the only place the ICU
 * types appear), so hide ICU from this module's view. */
#include <libxml/xmlversion.h>
#undef LIBXML_ICU_ENABLED
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xmlsave.h>
#include <libxml/relaxng.h>
#include <libxml/xmlerror.h>
