// The viewer room's language, picked before the room starts (room.html loads this module first): the browser's
// own (navigator.languages) when it is one the room ships, English otherwise; <html lang> says which, and the
// page's static text (its data-i18n attributes) is filled in it.

import { translatePage, useBrowserLanguage } from "./i18n.js";
import { t } from "./strings/room.js";

useBrowserLanguage();
translatePage(t);
