// The interface language: zh-CN by default, English as a switch (kept in localStorage).
import zh from "./i18n/zh-CN.js";
import en from "./i18n/en.js";

const CATALOGUES = { "zh-CN": zh, en };
const KEY = "sharpeyes.lang";

export let lang = CATALOGUES[localStorage.getItem(KEY)] ? localStorage.getItem(KEY) : "zh-CN";

/** The string for `key` in the current language, with {name} placeholders filled from `params`. */
export function t(key, params = {}) {
  const text = CATALOGUES[lang][key] ?? CATALOGUES["zh-CN"][key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => (name in params ? String(params[name]) : `{${name}}`));
}

export function toggleLang() {
  lang = lang === "zh-CN" ? "en" : "zh-CN";
  localStorage.setItem(KEY, lang);
  document.documentElement.lang = lang;
}

/** Fill every [data-i18n] element under `root`. */
export function translate(root = document) {
  document.documentElement.lang = lang;
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
}
