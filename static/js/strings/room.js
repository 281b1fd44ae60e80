// The viewer room's strings, bound: t(key, vars) in the language the room picked (i18n.js). The room's modules
// import t from here; a page that shares a module with the room (the studio's chat, the sign-in card) and never
// picks a language gets the English.

import { translator } from "../i18n.js";
import en from "./room.en.js";
import zh from "./room.zh.js";

export const t = translator({ en, zh });
