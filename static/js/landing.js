// The landing page: the studio address it quotes from the server's log is on this server, whatever its address.

for (const node of document.querySelectorAll("[data-origin]")) node.textContent = location.origin;
