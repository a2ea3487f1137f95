// Dismiss a group of flash messages; without JavaScript they simply stay on the page.
document.addEventListener("click", (event) => {
  const button = event.target.closest(".flash-dismiss");
  if (button) {
    button.closest(".flash").remove();
  }
});
